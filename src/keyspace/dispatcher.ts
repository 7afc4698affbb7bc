// The keyspace clients see: the databases (database.ts) and any upstream etcds
// (backends/etcd/etcd-keyspace.ts), each a whole Keyspace. The routing rules say which
// one a request goes to, and it goes there whole. An upstream etcd numbers its own
// revisions, so a request spanning it and another backend is refused (the config
// validator allows an upstream only whole-resource routes, so Kubernetes never sends one).
// Keyspace-wide services belong to the default backend: it keeps the leases (with copies
// in the others) and answers Compact. Label/field selectors are applied here, with the
// CRDs' selectable fields for custom resources (crd-registry.ts).
import { create } from "@bufbuild/protobuf";
import {
  type AlarmRequest,
  type AlarmType,
  type CompactionRequest,
  type DeleteRangeRequest,
  type HashKVRequest,
  type PutRequest,
  type RangeRequest,
  RangeRequestSchema,
  type TxnRequest,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { type EtcdKeyspace, upstreamSnapshotRefused } from "../backends/etcd/etcd-keyspace.ts";
import type { Topology } from "../router/contract.ts";
import type { GcCounts } from "../mvcc/auto-gc.ts";
import type { AuthView } from "../mvcc/backend.ts";
import type { Deadline } from "../mvcc/deadline.ts";
import { EtcdError } from "../mvcc/errors.ts";
import { bytesEqual, isEmptyRange, keyString, prefixEnd, toKeyRange, txnRanges } from "../mvcc/keyrange.ts";
import type { DeleteOut, PutOut, RangeOut, TxnOut } from "../mvcc/responses.ts";
import type { KeyRange, Rev } from "../mvcc/types.ts";
import { moveKeys } from "../router/move.ts";
import { sameTopology, UPSTREAM_KEYS_STAY } from "../router/open.ts";
import { validateTopology } from "../router/validate.ts";
import { log } from "../util/log.ts";
import { type CustomFieldLookup, namesOtherFields, parseSelection, type Selection } from "../selectors/index.ts";
import type { SnapshotSource } from "../snapshot/index.ts";
import type {
  AlarmOut,
  Answer,
  BackendStats,
  Keyspace,
  LeaseKeeper,
  MoveProgress,
  ObservedKeyspace,
  PrefixCount,
  Probe,
  RangeChunk,
  RangeOptions,
  RangeStreamOptions,
  RangeStreams,
  Rerouting,
  StatusOut,
  WatchSession,
  WatchStream,
} from "./contract.ts";
import { CrdRegistry } from "./crd-registry.ts";
import type { DatabaseKeyspace } from "./database.ts";
import { DispatchedWatch } from "./dispatched-watch.ts";
import { streamRange } from "./range-stream.ts";
import { selectedRange } from "./selected-range.ts";

/** every key: [\0, \0) */
const EVERYTHING: KeyRange = toKeyRange(new Uint8Array([0]), new Uint8Array([0]));
/** how long a selector range waits for the CRD registry to catch up before answering the superset */
const CRD_WAIT_MS = 1000;

/**
 * Whether a range may hold custom resources the CRD registry knows: those of the first key
 * prefix's apiserver (another tenant's CRDs are not followed, so its ranges get none), and
 * not when the range lies within one resource stored without an API group (a built-in's,
 * such as pods: a kubelet's spec.nodeName list need not wait for the CRD registry). Custom
 * resources' keys always carry their group, which has a dot.
 */
function mayHoldCustomResources(r: RangeRequest, keyPrefixes: readonly string[]): boolean {
  const end = prefixEnd(r.key);
  const within = r.rangeEnd.length === 0 || (end !== undefined && bytesEqual(r.rangeEnd, end));
  const [prefix, ...others] = keyPrefixes;
  const key = keyString(r.key);
  if (within && others.some((p) => key.startsWith(p))) return false;
  if (!within || !key.startsWith(prefix!)) return true;
  const rest = key.slice(prefix!.length), slash = rest.indexOf("/");
  return slash < 0 || rest.slice(0, slash).includes(".");
}

export class Dispatcher implements Keyspace, RangeStreams, Rerouting, ObservedKeyspace {
  /** the CRDs' selectable fields, learnt from the keyspace itself once started */
  readonly customFields: CrdRegistry;

  constructor(
    readonly database: DatabaseKeyspace,
    /** the upstream etcds by backend name */
    readonly upstreams: Map<string, EtcdKeyspace>,
  ) {
    this.customFields = new CrdRegistry((keys) => this.memberFor([keys], "watch"), database.router.topology.keyPrefixes[0]!, log);
  }

  private get defaultName(): string {
    return this.database.router.routing.defaultBackend;
  }

  /** the default backend's keyspace: it keeps the leases and its revisions are the ones Compact names */
  get home(): Keyspace {
    return this.upstreams.get(this.defaultName) ?? this.database;
  }

  /** the default backend's name (its URL for an upstream etcd) */
  get defaultBackend(): string {
    return this.upstreams.get(this.defaultName)?.name ?? this.database.router.primary?.backend.name ?? this.defaultName;
  }

  /**
   * Where etcd's users and roles are kept: the default backend, whatever the routing
   * rules say; none when it is an upstream etcd (which has its own).
   */
  get authStorage(): AuthView | undefined {
    if (this.upstreams.has(this.defaultName)) return undefined;
    return this.database.router.primary?.backend;
  }

  /**
   * The keyspace a request over these ranges goes to whole: an upstream etcd the ranges
   * route to, else the databases. A request spanning an upstream and any other backend is
   * refused: their revisions cannot be put in one order.
   */
  memberFor(ranges: KeyRange[], what: string): Keyspace {
    if (this.upstreams.size === 0) return this.database;
    const names = new Set<string>();
    for (const r of ranges) if (!isEmptyRange(r)) for (const n of this.database.router.backendsFor(r)) names.add(n);
    if (names.size === 0) names.add(this.defaultName);
    const upstream = [...names].find((n) => this.upstreams.has(n));
    if (upstream === undefined) return this.database;
    const other = [...names].find((n) => n !== upstream);
    if (other !== undefined) {
      throw new EtcdError(
        "FailedPrecondition",
        `strata: ${what} spans backends ${upstream} and ${other}; ${upstream} is an upstream etcd with its own revisions, so a request must stay within one resource routed to it`,
      );
    }
    return this.upstreams.get(upstream)!;
  }

  get latestRevision(): Rev {
    return this.database.latestRevision;
  }

  /**
   * With label/field selectors: answered by the databases from their selector index
   * (database.ts), an upstream etcd's plain range filtered here (selected-range.ts).
   */
  async range(r: RangeRequest, o?: RangeOptions): Promise<RangeOut> {
    const member = this.memberFor([toKeyRange(r.key, r.rangeEnd)], "range");
    // a malformed selector throws a SelectorError (the api answers InvalidArgument)
    const selection = parseSelection(r.labelSelector, r.fieldSelector);
    if (!selection) return member.range(r, o);
    const custom = await this.customFieldsFor(r, selection);
    return member.selectedRange ? member.selectedRange(r, selection, o, custom) : selectedRange(member, r, selection, o?.deadline, custom);
  }
  /**
   * The CRDs' selectable fields for a selection that names fields beyond metadata's over a
   * range that may hold custom resources, once the registry has every change made before
   * this request (briefly waited for); undefined otherwise (such fields are then unknown).
   */
  private async customFieldsFor(r: RangeRequest, s: Selection): Promise<CustomFieldLookup | undefined> {
    if (!namesOtherFields(s) || !mayHoldCustomResources(r, this.database.router.topology.keyPrefixes)) return undefined;
    return this.customFields.ready(this.customFields.mark(), CRD_WAIT_MS);
  }

  /** RangeStream over the keyspace the range goes to (range-stream.ts); a count is one chunk, as a Range counts it */
  async *rangeStream(r: RangeRequest, o: RangeStreamOptions): AsyncGenerator<RangeChunk> {
    if (r.countOnly) {
      const out = await this.range(r, { deadline: o.deadline() });
      yield { kvs: [], end: { revision: out.header.revision, more: false, count: out.count } };
      return;
    }
    const member = this.memberFor([toKeyRange(r.key, r.rangeEnd)], "range");
    const selection = parseSelection(r.labelSelector, r.fieldSelector);
    yield* streamRange(member, r, selection, o, selection && (await this.customFieldsFor(r, selection)));
  }
  async put(r: PutRequest, deadline?: Deadline): Promise<PutOut> {
    return this.memberFor([toKeyRange(r.key, new Uint8Array(0))], "put").put(r, deadline);
  }
  async deleteRange(r: DeleteRangeRequest, deadline?: Deadline): Promise<DeleteOut> {
    return this.memberFor([toKeyRange(r.key, r.rangeEnd)], "delete range").deleteRange(r, deadline);
  }
  async txn(r: TxnRequest, deadline?: Deadline): Promise<TxnOut> {
    return this.memberFor(txnRanges(r), "txn").txn(r, deadline);
  }
  /** revisions are the default backend's: with an upstream default it compacts the upstream (the databases keep their own retention) */
  compact(r: CompactionRequest): Promise<Answer> {
    return this.home.compact(r);
  }

  watch(stream: WatchStream): WatchSession {
    return new DispatchedWatch(this, stream);
  }

  get leases(): LeaseKeeper {
    return this.home.leases;
  }
  admitLease(): Promise<void> {
    return this.home.admitLease();
  }

  /** Over one upstream etcd alone, etcd's own; otherwise strata's, with the sizes of every backend. */
  async status(): Promise<StatusOut> {
    const upstreams = [...this.upstreams.values()];
    const sole = this.database.router.parts.length === 0 && upstreams.length === 1 ? upstreams[0] : undefined;
    if (sole) return sole.status();
    const [own, theirs] = await Promise.all([this.database.status(), Promise.all(upstreams.map((u) => u.status()))]);
    const home = upstreams.findIndex((u) => u.name === this.defaultName);
    const revision = (theirs[home] ?? own).header.revision;
    const sum = (f: (s: StatusOut) => bigint) => theirs.reduce((a, s) => a + f(s), f(own));
    return {
      ...own,
      header: { revision },
      dbSize: sum((s) => s.dbSize),
      dbSizeInUse: sum((s) => s.dbSizeInUse),
      raftIndex: BigInt(revision),
      raftAppliedIndex: BigInt(revision),
    };
  }

  /** strata's own alarms and every upstream etcd's */
  async alarm(r: AlarmRequest): Promise<AlarmOut> {
    const theirs = await Promise.all([...this.upstreams.values()].map((u) => u.alarm(r)));
    const own = await this.database.alarm(r);
    return { header: theirs[0]?.header ?? own.header, alarms: [...own.alarms, ...theirs.flatMap((a) => a.alarms)] };
  }

  async defragment(): Promise<void> {
    await this.database.defragment();
    for (const u of this.upstreams.values()) await u.defragment();
  }

  hash(): Promise<Answer & { hash: number }> {
    return this.memberFor([EVERYTHING], "range").hash();
  }
  snapshot<T>(write: (source: SnapshotSource) => Promise<T>): Promise<T> {
    const upstream = [...this.upstreams.keys()][0];
    if (upstream !== undefined) return Promise.reject(upstreamSnapshotRefused(upstream, this.database.router.parts.length > 0));
    return this.database.snapshot(write);
  }

  hashKV(r: HashKVRequest): Promise<Answer & { hash: number; compactRevision: Rev; hashRevision: Rev }> {
    return this.memberFor([EVERYTHING], "range").hashKV(r);
  }

  backendsOf(ranges: KeyRange[]): string[] {
    return this.database.backendsOf(ranges);
  }
  get compactsIn(): string[] {
    return this.home.compactsIn;
  }
  get leasesIn(): string {
    return this.defaultName;
  }

  check(next: Topology): void {
    validateTopology(next);
  }

  /** A live move between databases; keys never move into or out of an upstream etcd. */
  async reroute(next: Topology, report: (p: MoveProgress) => void): Promise<MoveProgress> {
    const router = this.database.router;
    const upstream = [...this.upstreams.keys()][0];
    if (upstream !== undefined && !sameTopology(router.topology, next)) {
      throw new EtcdError("FailedPrecondition", `strata: cannot migrate live: backend ${upstream} is an upstream etcd; ${UPSTREAM_KEYS_STAY}`);
    }
    return moveKeys(router, next, report);
  }

  /** Starts the keyspace-wide services. */
  start(): void {
    this.database.start();
    this.leases.start();
    this.customFields.start();
  }

  stop(): void {
    this.customFields.stop();
    this.leases.stop();
    this.database.stop();
  }

  /** Lets queued writes commit (before the databases close). */
  drain(): Promise<void> {
    return this.database.router.drain();
  }

  async close(): Promise<void> {
    for (const u of this.upstreams.values()) u.upstream.close();
    await this.database.router.close();
  }

  /** Per-backend figures for the status page and metrics; a backend that cannot answer carries its error instead. */
  async stats(): Promise<BackendStats[]> {
    const [own, theirs] = await Promise.all([this.database.router.stats(), Promise.all([...this.upstreams.values()].map((u) => u.stats()))]);
    return [...own, ...theirs];
  }

  /** The live keys under each key prefix (each tenant's), counted as a Range would; a prefix that cannot be counted carries the error. */
  prefixCounts(): Promise<PrefixCount[]> {
    const routing = this.database.router.routing;
    return Promise.all(routing.keyPrefixes.map(async (prefix): Promise<PrefixCount> => {
      const key = new Uint8Array(Buffer.from(prefix, "latin1"));
      const backends = routing.backendsFor(prefix);
      try {
        const out = await this.range(create(RangeRequestSchema, { key, rangeEnd: prefixEnd(key) ?? new Uint8Array([0]), countOnly: true }));
        return { prefix, backends, keys: out.count };
      } catch (err) {
        return { prefix, backends, error: (err as Error).message };
      }
    }));
  }

  /** Every backend with a cheap call that shows whether it answers (health checks). */
  get probes(): Probe[] {
    return [...this.database.router.probes, ...[...this.upstreams.values()].map((u) => u.probe)];
  }

  // What observe/ reads (ObservedKeyspace): the databases' figures

  get revision(): Rev {
    return this.database.router.revision;
  }
  get compactRevision(): Rev {
    return this.database.router.compactRevision;
  }
  get topology(): Topology {
    return this.database.router.topology;
  }
  get watchers(): number {
    return this.database.hub.size;
  }
  get quotas(): Array<{ name: string; bytes: bigint | undefined }> {
    return this.database.router.parts.map((p) => ({ name: p.name, bytes: p.quota?.bytes }));
  }
  autoGcCounts(): GcCounts | undefined {
    const running = this.database.router.parts.flatMap((p) => (p.store.autoGc ? [p.store.autoGc.counts] : []));
    if (running.length === 0) return undefined;
    const sum = (pick: (c: GcCounts) => number) => running.reduce((n, c) => n + pick(c), 0);
    return { deleted: sum((c) => c.deleted), referencesStripped: sum((c) => c.referencesStripped), deletionsStarted: sum((c) => c.deletionsStarted) };
  }
  alarms(): AlarmType[] {
    return this.database.router.alarms.list().map((a) => a.alarm);
  }
  get noSpace(): string | undefined {
    const alarms = this.database.router.alarms;
    return alarms.noSpace ? alarms.reason : undefined;
  }
  get damaged(): Array<{ name: string; url: string; error: string }> {
    return this.database.router.damaged;
  }
}
