// One etcd over several databases: the router sends each request to the databases its keys
// route to. Writes go to the one database their keys live in (a write spanning databases
// is refused); reads that span databases are merged at one revision (merged-reads.ts);
// commits are merged into one revision order for watchers (revision-order.ts); keys move
// between databases while strata serves (move.ts, with move-state.ts holding writes at
// the fence). With a single database this is a thin pass-through. Reads are raw: the
// keyspace finishes a range once (mvcc/range.ts). An upstream etcd among the backends is
// not the router's: the keyspace dispatcher sends it its requests whole.
import type { CompactionRequest, DeleteRangeRequest, PutRequest, TxnRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { BackendStats, Probe, Topology } from "./contract.ts";
import { Alarms } from "../mvcc/alarms.ts";
import type { Backend, BackendState, DbSize, EventsOptions, EventsPage, StorageFault } from "../mvcc/backend.ts";
import type { Deadline } from "../mvcc/deadline.ts";
import { EtcdError, errors } from "../mvcc/errors.ts";
import { isEmptyRange, isSingleKey, keyString, toKeyRange, txnRanges } from "../mvcc/keyrange.ts";
import { PageCounts } from "../mvcc/page-counts.ts";
import { AutoGc } from "../mvcc/auto-gc.ts";
import { costOfPut, costOfTxn, LEASE_OVERHEAD, quotaBytesFor, SpaceQuota } from "../mvcc/quota.ts";
import type { DeleteOut, PutOut, TxnOut } from "../mvcc/responses.ts";
import { type Committed, Store } from "../mvcc/store.ts";
import type { KeyRange, KeyValue, RangeQuery, RangeResult, Rev } from "../mvcc/types.ts";
import { keyCount } from "./key-count.ts";
import { mergedEvents, mergedRange, owned, type ReadContext } from "./merged-reads.ts";
import { MoveState } from "./move-state.ts";
import { callPart, type Part } from "./part.ts";
import { rangePrefix } from "./range-prefix.ts";
import { RevisionOrder } from "./revision-order.ts";
import { RoutingTable } from "./rules.ts";

type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

/** What each database's store is held to, from the settings. */
export interface StoreLimits {
  /** --quota-backend-bytes (0: each database's default, below 0: none) */
  quotaBytes?: bigint;
  /** --request-timeout */
  requestTimeoutMs?: number;
  /** --max-waiting-requests */
  maxWaiting?: number;
  /** --auto-gc: each database's store collects garbage in the transactions that start it */
  autoGc?: boolean;
}

export class Router implements ReadContext {
  private readonly order: RevisionOrder;
  private readonly moves = new MoveState();
  readonly byName: Map<string, Part>;
  private table: RoutingTable;
  /** etcd's alarms (NOSPACE) as this member raised them; the member id is set once known */
  readonly alarms: Alarms;

  constructor(
    private topo: Topology,
    /** the database backends */
    readonly parts: Part[],
    private readonly log: Log,
  ) {
    this.table = RoutingTable.of(topo);
    this.byName = new Map(parts.map((p) => [p.name, p]));
    this.order = new RevisionOrder(parts, log);
    this.alarms = new Alarms(0n, log);
    for (const p of parts) p.backend.onFault?.((f) => this.faulted(p, f));
    parts.forEach((p, i) => p.store.onCommit((c) => this.order.commit(i, this.moves.moving ? { ...c, events: owned(this.table, p, c.events) } : c)));
  }

  /** Opens every database backend and a store on each. */
  static async open(
    topology: Topology,
    backends: Array<{ name: string; backend: Backend }>,
    log: Log,
    limits: StoreLimits = {},
  ): Promise<{ router: Router; states: BackendState[] }> {
    const { quotaBytes = 0n, autoGc = false, ...storeLimits } = limits;
    const several = topology.backends.size > 1;
    const states = await Promise.all(backends.map((b) =>
      b.backend.open().catch((err: Error) => {
        throw new Error(`backend ${several ? `${b.name} (${b.backend.name})` : b.backend.name}: ${err.message}`);
      })
    ));
    for (const b of backends) {
      if ((await b.backend.selectorIndex?.()) === "incomplete") {
        log("warn", "the selector index does not cover the rows written before it existed: selected lists are filtered by strata until `strata reindex` builds it", { backend: b.name });
      }
    }
    const stride = backends.length;
    const parts = backends.map((b, index) => {
      const store = new Store(b.backend, { numbering: { slot: index, stride }, ...storeLimits, autoGc: autoGc ? new AutoGc() : undefined });
      store.init(states[index]!.revision, states[index]!.compactRevision);
      const bytes = quotaBytesFor(b.backend, quotaBytes);
      const quota = bytes === undefined ? undefined : new SpaceQuota(bytes, () => b.backend.size());
      return { name: b.name, index, backend: b.backend, store, quota };
    });
    return { router: new Router(topology, parts, log), states };
  }

  // Routing

  get routing(): RoutingTable {
    return this.table;
  }

  get topology(): Topology {
    return this.topo;
  }

  /** Replaces the rules (the caller has checked no existing key changes backend, or moved them). */
  setTopology(t: Topology): void {
    this.topo = t;
    this.table = RoutingTable.of(t);
  }

  /** the default backend when it is a database: leases live here */
  get primary(): Part | undefined {
    return this.byName.get(this.table.defaultBackend);
  }

  partFor(key: Uint8Array): Part {
    return this.byName.get(this.table.route(keyString(key)))!;
  }

  /** the names of the backends (databases or upstreams) that may hold keys in the range */
  backendsFor(r: KeyRange): string[] {
    return isSingleKey(r) ? [this.table.route(keyString(r.start))] : this.table.backendsFor(rangePrefix(r));
  }

  partsFor(r: KeyRange): Part[] {
    if (this.parts.length === 1) return this.parts;
    if (isSingleKey(r)) return [this.partFor(r.start)];
    return this.table.backendsFor(rangePrefix(r)).map((n) => this.byName.get(n)!);
  }

  // Live moves (move.ts)

  get moving(): boolean {
    return this.moves.moving;
  }

  /** Starts a move to new rules: compaction waits until it ends (its history is read). */
  beginMove(to: RoutingTable): Promise<void> {
    return this.moves.begin(this.table, to);
  }

  /** Holds back writes that may touch moving keys; returns the function that lets them go. */
  raiseFence(): Promise<() => void> {
    return this.moves.raiseFence();
  }

  endMove(): void {
    this.moves.end();
  }

  // Revisions (revision-order.ts)

  /** the merged revision watchers have been given everything up to */
  get revision(): Rev {
    return this.order.revision;
  }

  /** the newest revision acknowledged to any client */
  get latestRevision(): Rev {
    return this.order.latestRevision;
  }

  get compactRevision(): Rev {
    return this.parts.reduce((a, p) => (p.store.compactRevision > a ? p.store.compactRevision : a), 0n);
  }

  onCommit(fn: (c: Committed) => void): void {
    this.order.onRelease(fn);
  }

  /** counts carried between the pages of ranges over several databases (merged-reads.ts) */
  readonly pageCounts = new PageCounts();

  closeAll(parts: Part[]): Promise<Rev> {
    return this.order.closeAll(parts);
  }

  // Reads

  /**
   * A range as read (mvcc/range.ts's rangeQuery builds the query and finishes the answer).
   * `deadline`: a client's request, answered in bounded time while its database is away;
   * a query that may be answered encoded is only so answered by a single database.
   */
  read(q: RangeQuery, deadline?: Deadline): Promise<RangeResult> {
    const parts = isEmptyRange(q.range) ? [this.primary!] : this.partsFor(q.range);
    if (this.parts.length === 1) return parts[0]!.store.read(q, deadline);
    return this.moves.reading(mergedRange(this, parts, q, deadline));
  }

  /** Every live key and value at rev (0: now), in key order (Maintenance hashes). */
  async all(rev: Rev): Promise<{ kvs: KeyValue[]; revision: Rev }> {
    const everything = toKeyRange(new Uint8Array([0]), new Uint8Array([0]));
    const out = await this.read({ range: everything, revision: rev, limit: 0, countOnly: false, keysOnly: false });
    return { kvs: out.kvs, revision: out.revision };
  }

  /** History from every database, merged in revision order (for watchers catching up). */
  events(from: Rev, to: Rev, limit: number, opts?: EventsOptions): Promise<EventsPage> {
    if (this.parts.length === 1) return this.parts[0]!.backend.events(from, to, limit, opts);
    return this.moves.reading(mergedEvents(this, this.parts, from, to, limit, opts));
  }

  // Writes: with several databases a write is numbered above every revision already
  // published anywhere, so revisions grow in the order clients see writes acknowledged.

  put(p: PutRequest, deadline?: Deadline): Promise<PutOut> {
    const ranges = [toKeyRange(p.key, new Uint8Array(0))];
    return this.write(ranges, "put", async (part) => {
      await this.admit(part, costOfPut(p));
      return part.store.put(p, this.order.floor, deadline);
    });
  }

  deleteRange(d: DeleteRangeRequest, deadline?: Deadline): Promise<DeleteOut> {
    const ranges = [toKeyRange(d.key, d.rangeEnd)];
    return this.write(ranges, "delete range", (part) => part.store.deleteRange(d, this.order.floor, deadline));
  }

  txn(r: TxnRequest, deadline?: Deadline): Promise<TxnOut> {
    const ranges = txnRanges(r);
    return this.write(ranges, "txn", async (part) => {
      await this.admit(part, costOfTxn(r));
      return part.store.txn(r, this.order.floor, deadline);
    });
  }

  /** Routes a write to a database (waiting at a move's fence when it may touch moving keys) and tracks it until answered. */
  private write<T>(ranges: KeyRange[], what: string, run: (part: Part) => Promise<T>): Promise<T> {
    const fence = this.moves.fenceFor(ranges);
    if (fence) return fence.then(() => this.write(ranges, what, run));
    const part = this.writePart(ranges, what);
    // a damaged database is not written to: more writes may spread the damage
    const out = part.damage ? Promise.reject(part.damage) : run(part);
    if (this.parts.length > 1) this.moves.writing(out);
    return out;
  }

  /** The one database a write's ranges live in; a write spanning databases is refused. */
  private writePart(ranges: KeyRange[], what: string): Part {
    if (this.parts.length === 1) return this.parts[0]!;
    const names = new Set<string>();
    for (const r of ranges) if (!isEmptyRange(r)) for (const p of this.partsFor(r)) names.add(p.name);
    if (names.size === 0) return this.primary!;
    if (names.size > 1) {
      throw new EtcdError(
        "FailedPrecondition",
        `strata: ${what} spans backends ${[...names].join(" and ")}; a write must stay within one backend`,
      );
    }
    return this.byName.get([...names][0]!)!;
  }

  /**
   * etcd's quota check before a write that adds `cost` bytes: refused while NOSPACE is
   * raised, and refused raising it when the database would reach its quota.
   */
  private async admit(part: Part, cost: number): Promise<void> {
    if (cost === 0) return;
    if (this.alarms.noSpace) throw errors.noSpace();
    const q = part.quota;
    if (q && !(await callPart(part, () => q.fits(cost)))) {
      this.alarms.raiseNoSpace(
        `backend ${this.label(part)}: a write of ~${cost} bytes would take the database (${q.lastSize} bytes) to its quota of ${q.bytes} bytes (--quota-backend-bytes)`,
      );
      throw errors.noSpace();
    }
  }

  /** A lease grant's quota check (leases live in the default database). */
  async admitLease(): Promise<void> {
    const home = this.primary;
    if (home) await this.admit(home, LEASE_OVERHEAD);
  }

  // Compaction

  /** Compacts every database at rev, raising lagging ones to it first; waits for a move to end. */
  async compact(c: CompactionRequest): Promise<{ header: { revision: Rev } }> {
    if (this.parts.length === 1) return this.parts[0]!.store.compact(c);
    await this.moves.idle();
    const out = this.compactNow(c);
    this.moves.compaction(out);
    return out;
  }

  /** Compaction without waiting for a move (the move itself compacts when it switches rules). */
  async compactNow(c: CompactionRequest): Promise<{ header: { revision: Rev } }> {
    if (c.revision <= this.compactRevision) throw errors.compacted();
    if (c.revision > this.order.newest) throw errors.futureRevision();
    await Promise.all(this.parts.map((p) => this.order.closeAt(p, c.revision)));
    await Promise.all(this.parts.map((p) => (p.store.compactRevision < c.revision ? p.store.compact(c) : undefined)));
    return { header: { revision: this.order.newest } };
  }

  // The databases themselves

  /** A database reported running out of space, or damage: raise NOSPACE, or mark it damaged; say so in the log. */
  private faulted(p: Part, f: StorageFault): void {
    if (f.kind === "full") {
      this.log("error", "database out of space; raising the NOSPACE alarm", { backend: this.label(p), error: f.detail });
      this.alarms.raiseNoSpace(`backend ${this.label(p)}: the database is out of space: ${f.detail}`);
    } else {
      this.log("error", "database damaged: its requests answer DataLoss and its writes are refused", { backend: this.label(p), error: f.detail });
      p.damage ??= f;
    }
  }

  /** the databases that reported damage, with the first report */
  get damaged(): Array<{ name: string; url: string; error: string }> {
    return this.parts.flatMap((p) => (p.damage ? [{ name: p.name, url: p.backend.name, error: p.damage.detail }] : []));
  }

  private label(p: Part): string {
    return this.parts.length > 1 ? `${p.name} (${p.backend.name})` : p.backend.name;
  }

  async size(): Promise<DbSize> {
    const sizes = await Promise.all(this.parts.map((p) => callPart(p, () => p.backend.size())));
    return sizes.reduce((a, s) => ({ size: a.size + s.size, inUse: a.inUse + s.inUse }), { size: 0n, inUse: 0n });
  }

  async defragment(): Promise<void> {
    for (const p of this.parts) await callPart(p, () => p.backend.defragment());
  }

  /** Per-database figures for the status page and metrics; a database that cannot answer carries its error instead. */
  stats(): Promise<BackendStats[]> {
    return Promise.all(this.parts.map(async (p): Promise<BackendStats> => {
      try {
        const [keys, size, { revision }] = await Promise.all([
          callPart(p, () => keyCount(p.backend)),
          callPart(p, () => p.backend.size()),
          callPart(p, () => p.backend.revisions()),
        ]);
        return { name: p.name, url: p.backend.name, keys, size: size.size, inUse: size.inUse, revision, compactRevision: p.store.compactRevision };
      } catch (err) {
        return { name: p.name, url: p.backend.name, error: (err as Error).message };
      }
    }));
  }

  /** Every database with a cheap call that shows whether it answers (health checks). */
  get probes(): Probe[] {
    return this.parts.map((p) => ({ name: p.name, url: p.backend.name, probe: () => p.backend.revisions() }));
  }

  /** Follows commits that other strata processes make on the shared databases. */
  followExternalCommits(): () => void {
    const stops = this.parts.map((p) =>
      p.backend.onExternalCommit(() =>
        void p.store.syncExternal().catch((err) => this.log("warn", "reading other processes' commits failed", { backend: p.name, error: String(err) }))
      )
    );
    return () => stops.forEach((s) => s());
  }

  /** each database counts its large prefixes in the background (mvcc/count-warmup.ts) */
  warmCounts(): void {
    for (const p of this.parts) p.store.warmCounts();
  }

  async drain(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.store.drain()));
  }

  async close(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.backend.close()));
  }
}
