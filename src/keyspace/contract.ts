// The Keyspace contract: the whole etcd keyspace as the api layer serves it. Two kinds
// implement it — the databases behind the router (keyspace/database.ts) and an upstream
// etcd (backends/etcd/etcd-keyspace.ts) — and the dispatcher (keyspace/dispatcher.ts)
// sends each whole request to one of them. Like mvcc's Backend contract it belongs to the
// layer that consumes it, and the one layer below that implements it (backends/) may
// import it and nothing else of the keyspace (scripts/check-layers.ts).
import type {
  AlarmRequest,
  AlarmType,
  CompactionRequest,
  DeleteRangeRequest,
  HashKVRequest,
  PutRequest,
  RangeRequest,
  TxnRequest,
  WatchCreateRequest,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { BackendStats, MoveProgress, Probe, Topology } from "../router/contract.ts";
import type { GcCounts } from "../mvcc/auto-gc.ts";
import type { Deadline } from "../mvcc/deadline.ts";
import type { DeleteOut, PutOut, RangeOut, TxnOut } from "../mvcc/responses.ts";
import type { Event, KeyRange, KeyValue, LeaseRecord, Rev } from "../mvcc/types.ts";
import type { CustomFieldLookup, Selection } from "../selectors/index.ts";
import type { SnapshotSource } from "../snapshot/index.ts";

// the router's reports and the policy it takes, and what garbage collection counts, named
// here for the api and an upstream etcd
export type { BackendStats, GcCounts, MoveProgress, Probe, Topology };

/** One page of a range from a key on, at a revision (0: the latest, whose revision `revision` tells). */
export type PageReader = (from: Uint8Array, revision: Rev, limit: bigint) => Promise<{ kvs: KeyValue[]; more: boolean; revision: Rev }>;

/** What a request is answered with besides its own fields: the revision its header reports. */
export interface Answer {
  header: { revision: Rev };
}

/** How a Range is asked for, besides the request's own fields. */
export interface RangeOptions {
  /** a client's request, answered in bounded time while its database is away */
  deadline?: Deadline;
  /**
   * The caller writes RangeResponse's bytes itself (the api's unary Range, range-frame.ts,
   * and RangeStream's chunks), so the answer may carry its key-values as finished protobuf
   * bytes (RangeOut.encodedKvs, `kvs` then empty) instead of objects. The databases then
   * ask it of the read (RangeQuery.encode) and, where the SQL backends read rows on a
   * thread (backends/sql/read-worker.ts), the bytes are made there and handed over without
   * a copy: a large list costs the event loop neither objects for its rows nor encoding
   * them. Elsewhere the read answers objects and the api encodes them. Only for a plain
   * range (mvcc/range.ts rangeQuery: no revision filter, no sort but by key ascending);
   * a keyspace may always answer objects (an upstream etcd does). Unset: objects, as
   * Connect's serializer and every other reader of a RangeOut need them.
   */
  encodedKvs?: boolean;
}

export interface Keyspace {
  /**
   * The newest revision acknowledged to any client: what headers report that carry no
   * answer of their own, and where a watch without a start revision begins.
   */
  readonly latestRevision: Rev;

  /** etcd's Range, as RangeOptions asks for it */
  range(r: RangeRequest, o?: RangeOptions): Promise<RangeOut>;
  /**
   * The range with only the keys a label/field selection keeps, answered where the keys
   * are stored; a keyspace without it has its plain range filtered (selected-range.ts).
   */
  selectedRange?(r: RangeRequest, s: Selection, o?: RangeOptions, custom?: CustomFieldLookup): Promise<RangeOut>;
  /**
   * Pages of the range narrowed by the selection where the keys are stored: every key it
   * keeps and maybe others (the caller checks the values). Without it, the plain range.
   */
  narrowedPages?(r: RangeRequest, s: Selection, deadline?: Deadline): PageReader;
  put(r: PutRequest, deadline?: Deadline): Promise<PutOut>;
  deleteRange(r: DeleteRangeRequest, deadline?: Deadline): Promise<DeleteOut>;
  txn(r: TxnRequest, deadline?: Deadline): Promise<TxnOut>;
  compact(r: CompactionRequest): Promise<Answer>;

  /** The watchers one client stream places here; they answer through `stream`. */
  watch(stream: WatchStream): WatchSession;

  /** the Lease service */
  readonly leases: LeaseKeeper;
  /** etcd's storage quota check before a lease grant */
  admitLease(): Promise<void>;

  // Maintenance, as etcd's Status, Alarm, Defragment, Hash and HashKV answer
  status(): Promise<StatusOut>;
  alarm(r: AlarmRequest): Promise<AlarmOut>;
  defragment(): Promise<void>;
  hash(): Promise<Answer & { hash: number }>;
  hashKV(r: HashKVRequest): Promise<Answer & { hash: number; compactRevision: Rev; hashRevision: Rev }>;
  /**
   * etcd's snapshot of the keyspace at one revision: `write` is given its history and
   * leases. Refused (FailedPrecondition) where the keys are an upstream etcd's.
   */
  snapshot<T>(write: (source: SnapshotSource) => Promise<T>): Promise<T>;

  /** the names of the backends a request over these ranges reaches (the slow-request log names them) */
  backendsOf(ranges: KeyRange[]): string[];
  /** the backends Compact reaches, and the one keeping the leases */
  readonly compactsIn: string[];
  readonly leasesIn: string;
}

/**
 * etcd 3.7's RangeStream, answered over the Keyspace's ranges (keyspace/range-stream.ts):
 * what the api serves besides the Keyspace itself.
 */
export interface RangeStreams {
  /**
   * The range of `r` in chunks read at one revision; a chunk is read only when the
   * previous one was taken, so the caller's pace bounds the memory. What etcd's
   * RangeStream refuses (revision filters, a sort with an order) the api refuses before
   * (checks.ts); here they are not applied.
   */
  rangeStream(r: RangeRequest, options: RangeStreamOptions): AsyncGenerator<RangeChunk>;
}

export interface RangeStreamOptions {
  /** each page's deadline, taken as the page is read (a client's request, bounded like a Range) */
  deadline: () => Deadline;
  /** the bytes of key-values a chunk aims at */
  chunkBytes: number;
  /** chunks may carry their key-values encoded (RangeChunk.encodedKvs), as RangeOptions.encodedKvs tells */
  encodedKvs: boolean;
}

/** One chunk: a run of the range's key-values; the last chunk also ends the answer. */
export interface RangeChunk {
  kvs: KeyValue[];
  /** the kvs field already encoded (then `kvs` is empty) */
  encodedKvs?: Uint8Array;
  /** on the last chunk only, as etcd puts them there: what a Range of the whole would answer */
  end?: { revision: Rev; more: boolean; count: bigint };
}

/**
 * etcd's StatusResponse without the member's own ids (the api layer adds them); without a
 * version and raft term, it reports strata's own.
 */
export interface StatusOut extends Answer {
  version?: string;
  dbSize: bigint;
  dbSizeInUse: bigint;
  raftIndex: bigint;
  raftTerm?: bigint;
  raftAppliedIndex: bigint;
  errors: string[];
  isLearner: boolean;
}

export interface AlarmOut extends Answer {
  alarms: Array<{ memberID: bigint; alarm: number }>;
}

/** A watch response before the api layer puts etcd's header on it and encodes it. */
export interface WatchResponseOut {
  header: { revision: Rev };
  watchId: bigint;
  created?: boolean;
  canceled?: boolean;
  compactRevision?: Rev;
  cancelReason?: string;
  events: Event[];
  /** already one part of a larger response (an upstream etcd fragmented it): sent as it is */
  fragment?: boolean;
}

/** A client's watch stream as a keyspace writes to it. */
export interface WatchStream {
  /** strata's own stream (the CRD registry's), not a client's: its watchers are not counted as clients' */
  readonly own?: boolean;
  /**
   * Queues a response. `fragmentable`: the watcher asked for fragments, so one revision
   * larger than the stream's limit may be split into parts. Returns false when nothing
   * reached the client (a selection filtered out every event).
   */
  send(resp: WatchResponseOut, fragmentable: boolean): boolean | void;
  /** the watcher holds its id no longer (canceled, refused, compacted, or its upstream failed) */
  forget(watchId: bigint): void;
  /** true while the client is not keeping up */
  congested(): boolean;
  /** resolves when the queue has room again */
  drained(): Promise<void>;
}

/** The watchers of one client stream in one keyspace. */
export interface WatchSession {
  /** true once the session can place no more watchers (its connection failed): open another */
  readonly closed: boolean;
  /**
   * Places a watcher as `c` asks, under `id` when given (the dispatcher chose it), else under
   * c.watchId; answers created or refused through the stream.
   */
  create(c: WatchCreateRequest, id?: bigint): void;
  cancel(watchId: bigint): void;
  /**
   * Answers with the revision every watcher has been given everything up to. `each`: one
   * answer per watcher, as the stream also has watchers elsewhere whose revisions differ.
   */
  requestProgress(each?: boolean): void;
  close(): void;
}

/** The Lease service as the api layer calls it; which backend is authoritative is the keeper's business. */
/**
 * etcd's five lease operations. The keyspace's keeper answers them for clients; an upstream
 * etcd (backends/etcd) answers them for its own leases, which the keeper in the databases
 * mirrors so keys stored there can be attached to a lease of the same ID and TTL.
 */
export interface LeaseService {
  grant(requestedTtl: Rev, requestedId: Rev): Promise<{ id: Rev; ttl: Rev; revision: Rev }>;
  /** resolves to the header revision */
  revoke(id: Rev): Promise<Rev>;
  /** TTL 0: the lease is gone */
  renew(id: Rev): Promise<{ ttl: Rev; revision: Rev }>;
  /** TTL -1: no such lease (etcd answers so rather than with an error) */
  timeToLive(id: Rev, keys: boolean): Promise<{ ttl: Rev; grantedTtl: Rev; keys: Uint8Array[]; revision: Rev }>;
  list(): Promise<{ ids: Rev[]; revision: Rev }>;
}

/** A keyspace's leases: the five operations, with expiry kept between start and stop. */
export interface LeaseKeeper extends LeaseService {
  /** leases granted and revoked (by a client or by expiry) through this process, for metrics */
  readonly counts: { granted: number; revoked: number };
  start(): void;
  stop(): void;
}

/**
 * Copies of leases an upstream etcd keeps, held in the databases so a key stored there is
 * attached to its lease in the database's own transaction.
 */
export interface LeaseCopies {
  /** puts the copy, replacing one an interrupted revoke left */
  put(lease: LeaseRecord): Promise<void>;
  /** removes the copy with the keys attached to it */
  drop(id: Rev): Promise<void>;
  /** the keys attached to the lease here */
  keys(id: Rev): Promise<Uint8Array[]>;
  /** the leases copied here */
  ids(): Promise<Rev[]>;
}

/**
 * What observe/ reads of the running keyspace for the metrics, /health and the status
 * page: figures taken as they are read, never the keyspace's parts. The dispatcher
 * implements it; the revisions, watchers, quotas, alarms and damage are the databases'.
 */
export interface ObservedKeyspace {
  /** the revision watchers have been given everything up to: etcd's current revision */
  readonly revision: Rev;
  /** the newest compaction of any database */
  readonly compactRevision: Rev;
  /** the databases' routing in force (the status page shows its rules and default) */
  readonly topology: Topology;
  /** clients' watchers placed in the databases now */
  readonly watchers: number;
  /** the keyspace's leases, for what they count */
  readonly leases: LeaseKeeper;
  /** each database's storage quota (--quota-backend-bytes); undefined where none applies */
  readonly quotas: Array<{ name: string; bytes: bigint | undefined }>;
  /** what storage-side garbage collection (--auto-gc) did, summed over the databases; undefined where none runs */
  autoGcCounts(): GcCounts | undefined;
  /** the alarms this member raised (etcd's AlarmType), oldest first */
  alarms(): AlarmType[];
  /** undefined while NOSPACE is not raised; else why strata raised it ("" when a client did) */
  readonly noSpace: string | undefined;
  /** the databases that reported damaged data, with the first report */
  readonly damaged: Array<{ name: string; url: string; error: string }>;
  /** per-backend figures; a backend that cannot answer carries its error instead */
  stats(): Promise<BackendStats[]>;
  /** the live keys under each key prefix (each tenant's) */
  prefixCounts(): Promise<PrefixCount[]>;
  /** every backend's cheap call that shows whether it answers */
  readonly probes: Probe[];
}

/** The live keys under one key prefix (one kube-apiserver's, one tenant's), over every backend it spans. */
export type PrefixCount =
  | { prefix: string; backends: string[]; keys: bigint; error?: undefined }
  | { prefix: string; backends: string[]; error: string };

/**
 * New routing rules for a running keyspace (strata's Admin service, `strata migrate
 * --endpoint`): the keys whose backend changes move while strata serves.
 */
export interface Rerouting {
  /** Checks the rules on their own; a ConfigError says what is wrong. */
  check(next: Topology): void;
  /** Moves the keys the rules send elsewhere and puts the rules in force; resolves to the last report. */
  reroute(next: Topology, report: (p: MoveProgress) => void): Promise<MoveProgress>;
}
