// The contract every database family implements, as small views composed into Backend;
// owned by mvcc/ which consumes it (backends import it from here). The mvcc store never sees SQL; a backend never sees
// gRPC. Backends store etcd's MVCC data model faithfully:
// every revision of every key until it is compacted, the current state, and leases.
import { EtcdError, errors } from "./errors.ts";
import type { Event, KeyRange, KeyValue, LeaseRecord, RangeQuery, RangeResult, Rev } from "./types.ts";

export interface BackendState {
  revision: Rev;
  compactRevision: Rev;
  clusterId: bigint;
  memberId: bigint;
}

/** What one client transaction inside a write batch reads. Reads see the writes made before them. */
export interface TxnRead {
  /** the store's revision before this transaction */
  readonly revision: Rev;
  readonly compactRevision: Rev;
  /** keys in range at `revision` (undefined: the latest state including this txn's writes), in key order */
  range(range: KeyRange, opts?: { revision?: Rev; limit?: number; keysOnly?: boolean }): Promise<KeyValue[]>;
  count(range: KeyRange, revision?: Rev): Promise<bigint>;
  leaseExists(id: Rev): Promise<boolean>;
  /** whether the lease exists and its deadline is at or before now */
  leaseExpired(id: Rev, now: number): Promise<boolean>;
  /** live keys attached to a lease, in key order */
  leaseKeys(id: Rev): Promise<KeyValue[]>;
}

/**
 * Live objects found by their ownership (the storage-side garbage collector's lookups,
 * answered from the selector index's entries; see src/selectors/index-entries.ts). They
 * see the writes made before them in the batch.
 */
export interface OwnerLookup {
  /** live key-values whose object names this uid in its ownerReferences, in key order */
  dependents(uid: string): Promise<KeyValue[]>;
  /** live key-values whose object has this uid (one, but for copies under several keys) */
  withUid(uid: string): Promise<KeyValue[]>;
}

/** The view of one client transaction inside a write batch: its reads and its writes. */
export interface WriteTx extends TxnRead {
  /** objects by ownership; absent where writes keep no selector index */
  readonly owners?: OwnerLookup;
  /** Writes kv (already carrying its revisions and version) at kv.modRevision. */
  put(kv: KeyValue, prev: KeyValue | undefined, sub: number): Promise<void>;
  /** Deletes the live key `prev` at revision rev. */
  delete(prev: KeyValue, rev: Rev, sub: number): Promise<void>;
  leaseInsert(lease: LeaseRecord): Promise<void>;
  leaseDelete(id: Rev): Promise<void>;
  /** removes every trace of a key, history included, with no tombstone (it moved to another backend) */
  forget(key: Uint8Array): Promise<void>;
  /** makes rev the store's revision (called once by a transaction that wrote) */
  setRevision(rev: Rev): Promise<void>;
  /** records that reads below rev now fail as compacted; history is removed later by compact() */
  setCompactRevision(rev: Rev): Promise<void>;
}

/** What a history page holds besides its revisions; watchers catching up ask for only what they need. */
export interface EventsOptions {
  /** only events on keys in this range (default: every key) */
  range?: KeyRange;
  /** end the page, between revisions, once about this many bytes of keys and values were read */
  bytes?: number;
  /** read each event's previous version (default true) */
  prevKv?: boolean;
  /** give each event its sub revision (default false): etcd's hash of the history needs them */
  subs?: boolean;
}

export interface EventsPage {
  events: Event[];
  /** the page covers every revision up to here */
  through: Rev;
  /** the compact revision of the same snapshot: when from is below it, part of the range may be gone */
  compactRevision: Rev;
}

/**
 * The database itself failing in a way retrying cannot mend: out of space (disk full, or
 * a table at its size limit), or damaged data. Answered as etcd answers: NOSPACE's
 * ResourceExhausted, or DataLoss (not the retryable Unavailable) naming the backend.
 */
export class StorageFault extends EtcdError {
  constructor(
    readonly kind: "full" | "corrupt",
    /** the backend's name (its URL without credentials) */
    readonly backend: string,
    /** the database's own words */
    readonly detail: string,
  ) {
    super(
      kind === "full" ? "ResourceExhausted" : "DataLoss",
      kind === "full" ? errors.noSpace().message : `strata: backend ${backend} is damaged: ${detail}`,
    );
  }
}

export type WriteResult<T> = { ok: true; value: T } | { ok: false; error: unknown };

export interface DbSize {
  /** bytes the database occupies */
  size: bigint;
  /** bytes holding live data */
  inUse: bigint;
}

// The contract as small views, after etcd's ReadView/WriteView/TxnRead/TxnWrite: a backend's
// obligations read as a checklist, and a consumer names the view it needs (a history
// reader needs HistoryView, not the whole Backend). Backend is all of them.

/** Consistent reads of the key space at a revision. */
export interface ReadView {
  /** a name for messages: the URL without credentials */
  readonly name: string;
  /** A consistent read at query.revision (0 = latest); throws compacted / future revision. */
  range(query: RangeQuery): Promise<RangeResult>;
  /** current and compact revision as stored */
  revisions(): Promise<{ revision: Rev; compactRevision: Rev }>;
}

/** Group-committed write transactions: the only way anything changes. */
export interface WriteView {
  /**
   * Runs the transactions in order inside one database transaction (group commit).
   * A transaction that throws before writing fails alone and the others commit; one that
   * throws after writing makes the whole batch fail (etcd's refusals all come before any
   * write). Resolves after the commit is durable. A backend may roll a batch back and
   * run its transactions again (the NATS backend does when another process got first).
   * `keys` are single keys the transactions will read or write: a backend may fetch them
   * for the whole batch at once.
   */
  write<T>(txns: Array<(tx: WriteTx) => Promise<T>>, keys?: Uint8Array[]): Promise<WriteResult<T>[]>;
}

/** The history of revisions, for watchers and for other processes' commits; its compaction. */
export interface HistoryView {
  /**
   * Events with from <= revision <= through (through <= to), in revision order: about
   * `limit` events (and `opts.bytes`), never part of a revision. Revisions need not be consecutive.
   */
  events(from: Rev, to: Rev, limit: number, opts?: EventsOptions): Promise<EventsPage>;
  /** Removes history at or below rev (already recorded by setCompactRevision), keeping each key's version live at rev. */
  compact(rev: Rev): Promise<void>;
  /**
   * Calls notify whenever another strata process may have committed (a notification or
   * a poll); returns a function that stops it. Backends nobody else writes never call it.
   */
  onExternalCommit(notify: () => void): () => void;
}

/** Reads of leases outside write transactions (grants and revokes go through WriteTx). */
export interface LeaseView {
  /** live keys attached to a lease, in key order */
  leaseKeys(id: Rev): Promise<Uint8Array[]>;
  leases(): Promise<LeaseRecord[]>;
  lease(id: Rev): Promise<LeaseRecord | undefined>;
  /** Extends a live lease to now + TTL; resolves to its TTL, or 0 when it is gone or expired. */
  renewLease(id: Rev, now: number): Promise<Rev>;
  /** leases whose deadline is at or before now */
  expiredLeases(now: number): Promise<Rev[]>;
}

/** The database as a whole: opening, closing, its size and its health. */
export interface AdminView {
  /** a name for messages: the URL without credentials */
  readonly name: string;
  /** the database lives in strata's own files (SQLite): etcd's default storage quota applies */
  readonly embedded?: boolean;
  open(): Promise<BackendState>;
  close(): Promise<void>;
  size(): Promise<DbSize>;
  /** returns free space to the operating system */
  defragment(): Promise<void>;
  /**
   * Calls fn with every StorageFault this backend throws, once per failed database call
   * (reads and writes alike), so the server can raise alarms and report the damage.
   */
  onFault?(fn: (fault: StorageFault) => void): void;
  /**
   * The selector index (selected ranges answered in the database): not kept by writes
   * ("off"), kept and covering every row ("complete") or kept but missing rows written
   * without it ("incomplete"); and building it for those rows (returns the rows visited;
   * `progress` hears the count as it grows). Absent: selections are filtered in strata.
   */
  selectorIndex?(): Promise<"off" | "complete" | "incomplete">;
  /**
   * Whether writes keep the index (called before open). A database written without it is
   * marked incomplete when opened, and needs buildSelectIndex once it is kept again.
   */
  keepSelectorIndex?(on: boolean): void;
  buildSelectIndex?(progress?: (rows: number) => void): Promise<number>;
}

/**
 * etcd's auth store (users, roles, whether auth is on) as one record beside the keys, with
 * its own revision (etcd's auth revision, not a key revision). Every strata process on the
 * database shares it: a change is compare-and-swap on the revision, and a process notices
 * another's change by polling the revision. The api layer encodes the state; a backend
 * keeps the bytes.
 */
export interface AuthRecord {
  /** etcd's auth revision: 1 on a fresh store, one more with every change */
  revision: Rev;
  data: Uint8Array;
}

export interface AuthView {
  /** the stored record; undefined when none was written yet */
  readAuth(): Promise<AuthRecord | undefined>;
  /** the stored revision alone (0: none), cheap enough to poll */
  authRevision(): Promise<Rev>;
  /**
   * Stores `next` if the stored revision is still `expected` (0: nothing stored yet);
   * false, changing nothing, when another process changed it first.
   */
  writeAuth(expected: Rev, next: AuthRecord): Promise<boolean>;
}

/** Everything one database family implements. */
export interface Backend extends ReadView, WriteView, HistoryView, LeaseView, AdminView, AuthView {}
