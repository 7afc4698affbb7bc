// One etcd over several databases. Writes go to the one database their keys route to (a
// txn spanning databases is refused); reads that span databases read each at one revision
// and merge; commits are merged into one revision order for watchers (merger.ts). With a
// single database this is a thin pass-through. An upstream etcd among the backends is not
// the router's: the keyspace dispatcher sends it its requests whole.
import type { CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Backend, BackendState, DbSize, EventsOptions, EventsPage, StorageFault } from "../mvcc/backend.ts";
import { Alarms } from "../mvcc/alarms.ts";
import { costOfPut, costOfTxn, DEFAULT_QUOTA_BYTES, LEASE_OVERHEAD, SpaceQuota } from "../mvcc/quota.ts";
import { type Committed, Store } from "../mvcc/store.ts";
import type { Deadline } from "../mvcc/deadline.ts";
import { backendUnavailable, EtcdError, errors } from "../mvcc/errors.ts";
import { compareBytes, isEmptyRange, keyString, toKeyRange, txnRanges } from "../mvcc/keyrange.ts";
import { finishRange, rangeFetch } from "../mvcc/kv.ts";
import type { DeleteOut, PutOut, RangeOut, TxnOut } from "../mvcc/responses.ts";
import { checkRevision } from "../mvcc/revisions.ts";
import type { Event, KeyRange, KeyValue, Rev } from "../mvcc/types.ts";
import type { BackendStats, Probe } from "../keyspace/contract.ts";
import { CommitMerger } from "./merger.ts";
import { keyCount } from "./key-count.ts";
import type { Topology } from "../config/topology.ts";
import { RoutingTable } from "./rules.ts";

export interface Part {
  name: string;
  index: number;
  backend: Backend;
  store: Store;
  /** the storage quota, when one applies */
  quota?: SpaceQuota;
  /** set once the database reported damaged data: its writes are refused from then on */
  damage?: StorageFault;
}

/**
 * The storage quota of a database: --quota-backend-bytes as etcd reads it (0: the default,
 * below 0: none). The default is etcd's 2 GiB for a database in strata's own files
 * (SQLite); a database server manages its own space, so it has none unless one is set.
 */
export function quotaBytesFor(backend: Backend, setting: bigint): bigint | undefined {
  if (setting < 0n) return undefined;
  if (setting > 0n) return setting;
  return backend.embedded ? DEFAULT_QUOTA_BYTES : undefined;
}


/**
 * The longest prefix every key of the range starts with. Besides the start and end's
 * common prefix, this sees that a page continuing a prefix list, [/registry/pods/x\0,
 * /registry/pods0), stays within /registry/pods/.
 */
export function rangePrefix(r: KeyRange): string {
  if (r.end === undefined) return "";
  const s = r.start, e = r.end;
  let c = 0;
  while (c < s.length && c < e.length && s[c] === e[c]) c++;
  // a longer prefix P of the start covers the range when the end is P's own range end:
  // the common part, then the start's next byte plus one
  if (c < s.length && e.length === c + 1 && e[c] === s[c]! + 1) {
    let n = c + 1;
    while (n < s.length && s[n] === 0xff) n++;
    return keyString(s.subarray(0, n));
  }
  return keyString(s.subarray(0, c));
}

/**
 * Keys changing backend while strata serves (move.ts). Until the move ends a backend may
 * hold copies of keys the current rules give another one; reads and events show each
 * backend's own keys only. While `fence` is set, writes that may touch moving keys wait.
 */
interface Move {
  from: RoutingTable;
  to: RoutingTable;
  fence?: Promise<void>;
  done: Promise<void>;
  end: () => void;
}

export class Router {
  private readonly merger: CommitMerger;
  private readonly advancing: Array<{ target: Rev; running: boolean }>;
  readonly byName: Map<string, Part>;
  private table: RoutingTable;
  private move?: Move;
  /** writes not yet answered (a fence waits for those already routed) */
  private readonly inflight = new Set<Promise<unknown>>();
  /** merged reads under way (a move waits for those that may not filter copies) */
  private readonly reads = new Set<Promise<unknown>>();
  private compacting: Promise<unknown> = Promise.resolve();
  /** etcd's alarms (NOSPACE) as this member raised them; the member id is set once known */
  readonly alarms: Alarms;

  constructor(
    private topo: Topology,
    /** the database backends */
    readonly parts: Part[],
    private readonly log: (level: string, msg: string, fields?: Record<string, unknown>) => void,
  ) {
    this.table = RoutingTable.of(topo);
    this.byName = new Map(parts.map((p) => [p.name, p]));
    this.advancing = parts.map(() => ({ target: 0n, running: false }));
    this.merger = new CommitMerger(parts.map((p) => p.store.revision), (i, t) => this.requestAdvance(i, t));
    this.alarms = new Alarms(0n, log);
    for (const p of parts) p.backend.onFault?.((f) => this.faulted(p, f));
    parts.forEach((p, i) => p.store.onCommit((c) => this.merger.commit(i, this.move ? { ...c, events: this.own(p, c.events) } : c)));
  }

  /** Opens every database backend and a store on each. */
  static async open(
    topology: Topology,
    backends: Array<{ name: string; backend: Backend }>,
    log: (level: string, msg: string, fields?: Record<string, unknown>) => void,
    /** --quota-backend-bytes (0: each database's default, below 0: none) */
    quotaBytes = 0n,
  ): Promise<{ router: Router; states: BackendState[] }> {
    const several = topology.backends.size > 1;
    const states = await Promise.all(backends.map((b) =>
      b.backend.open().catch((err: Error) => {
        throw new Error(`backend ${several ? `${b.name} (${b.backend.name})` : b.backend.name}: ${err.message}`);
      })
    ));
    const stride = backends.length;
    const parts = backends.map((b, index) => {
      const store = new Store(b.backend, { slot: index, stride });
      store.init(states[index]!.revision, states[index]!.compactRevision);
      const bytes = quotaBytesFor(b.backend, quotaBytes);
      const quota = bytes === undefined ? undefined : new SpaceQuota(bytes, () => b.backend.size());
      return { name: b.name, index, backend: b.backend, store, quota };
    });
    return { router: new Router(topology, parts, log), states };
  }

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

  get moving(): boolean {
    return this.move !== undefined;
  }

  /** Starts a move to new rules: compaction waits until it ends (its history is read). */
  async beginMove(to: RoutingTable): Promise<void> {
    if (this.move) throw new EtcdError("FailedPrecondition", "strata: a migration is already running");
    let end!: () => void;
    const done = new Promise<void>((r) => (end = r));
    this.move = { from: this.table, to, done, end };
    // reads begun before the move do not look for copies: they finish before any is made
    await Promise.allSettled([this.compacting, ...this.reads]);
  }

  private reading<T>(read: () => Promise<T>): Promise<T> {
    return track(this.reads, read());
  }

  /**
   * Holds back writes that may touch keys changing backend, then waits for the writes
   * already under way. Returns the function that lets the held writes go (routed by the
   * rules in force then).
   */
  async raiseFence(): Promise<() => void> {
    const m = this.move!;
    let release!: () => void;
    m.fence = new Promise<void>((r) => (release = r));
    await Promise.allSettled([...this.inflight]);
    return () => {
      m.fence = undefined;
      release();
    };
  }

  endMove(): void {
    const m = this.move;
    this.move = undefined;
    m?.end();
  }

  /** Whether a write over these ranges may touch a key whose backend the move changes. */
  private touchesMove(m: Move, ranges: KeyRange[]): boolean {
    return ranges.some((r) => {
      if (isEmptyRange(r)) return false;
      if (isSingleKey(r)) {
        const k = keyString(r.start);
        return m.from.route(k) !== m.to.route(k);
      }
      const p = rangePrefix(r), a = m.from.backendsFor(p), b = m.to.backendsFor(p);
      return !(a.length === 1 && b.length === 1 && a[0] === b[0]);
    });
  }

  /** the events that are p's to show: keys the rules give to p */
  private own(p: Part, events: Event[], table = this.table): Event[] {
    return events.filter((e) => table.route(keyString(e.kv.key)) === p.name);
  }

  /** the merged revision watchers have been given everything up to */
  get revision(): Rev {
    return this.merger.revision;
  }

  /**
   * The newest revision acknowledged to any client: what response headers report, and
   * where a watch without a start revision begins. With several backends it runs ahead
   * of `revision` until the others are raised to it (milliseconds).
   */
  get latestRevision(): Rev {
    return this.merger.newest > this.merger.revision ? this.merger.newest : this.merger.revision;
  }

  get compactRevision(): Rev {
    return this.parts.reduce((a, p) => (p.store.compactRevision > a ? p.store.compactRevision : a), 0n);
  }

  /** the default backend when it is a database: leases live here */
  get primary(): Part | undefined {
    return this.byName.get(this.table.defaultBackend);
  }

  onCommit(fn: (c: Committed) => void): void {
    this.merger.onRelease(fn);
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

  // `deadline`: a client's request, answered in bounded time while its database is away;
  // `encode`: the answer may carry encoded key-values (see Store.range); merged reads never do

  async range(r: RangeRequest, deadline?: Deadline, encode = false): Promise<RangeOut> {
    const kr = toKeyRange(r.key, r.rangeEnd);
    const parts = isEmptyRange(kr) ? [this.primary!] : this.partsFor(kr);
    if (this.parts.length === 1) return parts[0]!.store.range(r, deadline, encode);
    return this.reading(() => this.mergedRange(r, parts, deadline));
  }

  private async mergedRange(r: RangeRequest, parts: Part[], deadline?: Deadline): Promise<RangeOut> {
    // one revision for all: the newest any backend has published (as etcd answers at its
    // newest revision), with the backends read raised to it so none commits at or below it
    const current = await this.closeAll(parts);
    const at = checkRevision(r.revision, current, this.compactRevision);
    const query = { ...r, revision: at };
    if (this.move) return this.rangeOwned(parts, query, current);
    const outs = await Promise.all(parts.map((p) => p.store.range({ ...query, limit: 0n, sortOrder: 0, sortTarget: 0, ...fetchOnly(r) } as RangeRequest, deadline)));
    const kvs: KeyValue[] = outs.flatMap((o) => o.kvs).sort((a, b) => compareBytes(a.key, b.key));
    const count = outs.reduce((n, o) => n + o.count, 0n);
    return finishRange(r, kvs, count, current);
  }

  /**
   * A merged range during a move: each backend's keys are filtered to the ones it owns
   * before limits and counts apply, so every backend is read in full (moves are short).
   */
  private async rangeOwned(parts: Part[], r: RangeRequest, current: Rev): Promise<RangeOut> {
    const all = { ...r, limit: 0n, sortOrder: 0, sortTarget: 0, countOnly: false, keysOnly: r.countOnly || rangeFetch(r).keysOnly } as RangeRequest;
    const { table, results } = await this.underOneTable(() => Promise.all(parts.map((p) => p.store.range(all))));
    const kvs = results.flatMap((out, i) => out.kvs.filter((kv) => table.route(keyString(kv.key)) === parts[i]!.name));
    kvs.sort((a, b) => compareBytes(a.key, b.key));
    return finishRange(r, kvs, BigInt(kvs.length), current);
  }

  /**
   * Runs reads until they all ran under the same rules: which copy of a moving key is
   * the real one changes when the rules switch, and a read from before the switch may
   * hold a copy that was brought up to date only at the switch.
   */
  private async underOneTable<T>(read: () => Promise<T>): Promise<{ table: RoutingTable; results: T }> {
    for (;;) {
      const table = this.table;
      const results = await read();
      if (this.table === table) return { table, results };
    }
  }

  /** Reads every backend's revision, raises the lagging ones to the newest; returns it. */
  private async closeAll(parts: Part[]): Promise<Rev> {
    const revs = await Promise.all(parts.map((p) => this.call(p, () => p.backend.revisions())));
    const at = revs.reduce((a, r) => (r.revision > a ? r.revision : a), this.merger.newest);
    await Promise.all(parts.map((p, i) => (revs[i]!.revision < at ? this.closeAt(p, at) : undefined)));
    return at;
  }

  /** Makes sure backend p will number every later commit above rev. */
  private async closeAt(p: Part, rev: Rev): Promise<void> {
    if (this.merger.knownOf(p.index) >= rev) return;
    await p.store.advance(rev);
  }

  private requestAdvance(i: number, target: Rev): void {
    const a = this.advancing[i]!;
    if (target > a.target) a.target = target;
    if (a.running) return;
    a.running = true;
    void (async () => {
      try {
        while (this.merger.knownOf(i) < a.target) {
          const before = this.merger.knownOf(i);
          await this.parts[i]!.store.advance(a.target);
          // another process got there first: read its commits instead of writing again
          if (this.merger.knownOf(i) === before) await this.parts[i]!.store.syncExternal();
        }
        a.running = false;
      } catch (err) {
        this.log("warn", "advancing a backend's revision failed; watchers wait for it", { backend: this.parts[i]!.name, error: String(err) });
        setTimeout(() => {
          a.running = false;
          this.requestAdvance(i, a.target);
        }, 1000).unref?.();
      }
    })();
  }

  // With several backends a write is numbered above every revision already published
  // anywhere, so revisions grow in the order clients see their writes acknowledged.

  put(p: PutRequest, deadline?: Deadline): Promise<PutOut> {
    const ranges = [toKeyRange(p.key, new Uint8Array(0))];
    return this.write(ranges, "put", async (part) => {
      await this.admit(part, costOfPut(p));
      return part.store.put(p, this.floor, deadline);
    });
  }

  deleteRange(d: DeleteRangeRequest, deadline?: Deadline): Promise<DeleteOut> {
    const ranges = [toKeyRange(d.key, d.rangeEnd)];
    return this.write(ranges, "delete range", (part) => part.store.deleteRange(d, this.floor, deadline));
  }

  txn(r: TxnRequest, deadline?: Deadline): Promise<TxnOut> {
    const ranges = txnRanges(r);
    return this.write(ranges, "txn", async (part) => {
      await this.admit(part, costOfTxn(r));
      return part.store.txn(r, this.floor, deadline);
    });
  }

  /** Routes a write to a database (waiting at a move's fence when it may touch moving keys) and tracks it until answered. */
  private write<T>(ranges: KeyRange[], what: string, run: (part: Part) => Promise<T>): Promise<T> {
    const m = this.move;
    if (m?.fence && this.touchesMove(m, ranges)) return m.fence.then(() => this.write(ranges, what, run));
    const part = this.writePart(ranges, what);
    // a damaged database is not written to: more writes may spread the damage
    const out = part.damage ? Promise.reject(part.damage) : run(part);
    if (this.parts.length > 1) track(this.inflight, out);
    return out;
  }

  /**
   * etcd's quota check before a write that adds `cost` bytes: refused while NOSPACE is
   * raised, and refused raising it when the database would reach its quota.
   */
  private async admit(part: Part, cost: number): Promise<void> {
    if (cost === 0) return;
    if (this.alarms.noSpace) throw errors.noSpace();
    const q = part.quota;
    if (q && !(await this.call(part, () => q.fits(cost)))) {
      this.alarms.raiseNoSpace(
        `backend ${this.label(part)}: a write of ~${cost} bytes would take the database (${q.lastSize} bytes) to its quota of ${q.bytes} bytes (--quota-backend-bytes)`,
      );
      throw errors.noSpace();
    }
  }

  /** A lease grant's quota check (leases live in the default backend). */
  async admitLease(): Promise<void> {
    const home = this.primary;
    if (home) await this.admit(home, LEASE_OVERHEAD);
  }

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

  /** the backends whose database reported damage, with the first report */
  get damaged(): Array<{ name: string; url: string; error: string }> {
    return this.parts.filter((p) => p.damage).map((p) => ({ name: p.name, url: p.backend.name, error: p.damage!.detail }));
  }

  private label(p: Part): string {
    return this.parts.length > 1 ? `${p.name} (${p.backend.name})` : p.backend.name;
  }

  private get floor(): Rev {
    return this.parts.length > 1 ? this.merger.newest : 0n;
  }

  /** The one backend a write's ranges live in; a write spanning backends is refused. */
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

  /** Compacts every database backend at rev, raising lagging ones to it first; waits for a move to end. */
  async compact(c: CompactionRequest): Promise<{ header: { revision: Rev } }> {
    if (this.parts.length === 1) return this.parts[0]!.store.compact(c);
    while (this.move) await this.move.done;
    const out = this.compactNow(c);
    this.compacting = out.catch(() => undefined);
    return out;
  }

  /** Compaction without waiting for a move (the move itself compacts when it switches rules). */
  async compactNow(c: CompactionRequest): Promise<{ header: { revision: Rev } }> {
    if (c.revision <= this.compactRevision) throw errors.compacted();
    if (c.revision > this.merger.newest) throw errors.futureRevision();
    await Promise.all(this.parts.map((p) => this.closeAt(p, c.revision)));
    await Promise.all(this.parts.map((p) => (p.store.compactRevision < c.revision ? p.store.compact(c) : undefined)));
    return { header: { revision: this.merger.newest } };
  }

  /** History from every backend, merged in revision order (for watchers catching up). */
  async events(from: Rev, to: Rev, limit: number, opts?: EventsOptions): Promise<EventsPage> {
    if (this.parts.length === 1) return this.parts[0]!.backend.events(from, to, limit, opts);
    return this.reading(() => this.mergedEvents(from, to, limit, opts));
  }

  private async mergedEvents(from: Rev, to: Rev, limit: number, opts?: EventsOptions): Promise<EventsPage> {
    const { table, results: pages } = await this.underOneTable(() => Promise.all(this.parts.map((p) => p.backend.events(from, to, limit, opts))));
    const through = pages.reduce((a, p) => (p.through < a ? p.through : a), to);
    const events: Event[] = pages.flatMap((p, i) => {
      const upTo = p.events.filter((e) => e.kv.modRevision <= through);
      return this.move ? this.own(this.parts[i]!, upTo, table) : upTo;
    });
    events.sort((a, b) => (a.kv.modRevision < b.kv.modRevision ? -1 : a.kv.modRevision > b.kv.modRevision ? 1 : 0));
    const compactRevision = pages.reduce((a, p) => (p.compactRevision > a ? p.compactRevision : a), 0n);
    return { events, through, compactRevision };
  }

  /** Every live key and value at rev (0: now), in key order (Maintenance hashes). */
  async all(rev: Rev): Promise<{ kvs: KeyValue[]; revision: Rev }> {
    const out = await this.range({ key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]), revision: rev, limit: 0n, sortOrder: 0, sortTarget: 0, serializable: false, keysOnly: false, countOnly: false, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n } as unknown as RangeRequest);
    return { kvs: out.kvs, revision: out.header.revision };
  }

  async size(): Promise<DbSize> {
    const sizes = await Promise.all(this.parts.map((p) => this.call(p, () => p.backend.size())));
    return sizes.reduce((a, s) => ({ size: a.size + s.size, inUse: a.inUse + s.inUse }), { size: 0n, inUse: 0n });
  }

  async defragment(): Promise<void> {
    for (const p of this.parts) await this.call(p, () => p.backend.defragment());
  }

  /** Per-backend figures for the status page and metrics; a backend that cannot answer carries its error instead. */
  async stats(): Promise<BackendStats[]> {
    const databases = this.parts.map(async (p): Promise<BackendStats> => {
      try {
        const [keys, size, { revision }] = await Promise.all([
          this.call(p, () => keyCount(p.backend)),
          this.call(p, () => p.backend.size()),
          this.call(p, () => p.backend.revisions()),
        ]);
        return { name: p.name, url: p.backend.name, keys, size: size.size, inUse: size.inUse, revision, compactRevision: p.store.compactRevision };
      } catch (err) {
        return { name: p.name, url: p.backend.name, error: (err as Error).message };
      }
    });
    return Promise.all(databases);
  }

  /** Every backend with a cheap call that shows whether it answers (health checks). */
  get probes(): Probe[] {
    return this.parts.map((p) => ({ name: p.name, url: p.backend.name, probe: () => p.backend.revisions() }));
  }

  /** Follows commits that other strata processes make on the shared backends. */
  followExternalCommits(): () => void {
    const stops = this.parts.map((p) =>
      p.backend.onExternalCommit(() =>
        void p.store.syncExternal().catch((err) => this.log("warn", "reading other processes' commits failed", { backend: p.name, error: String(err) }))
      )
    );
    return () => stops.forEach((s) => s());
  }

  async drain(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.store.drain()));
  }

  async close(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.backend.close()));
  }

  private async call<T>(p: Part, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof EtcdError) throw err;
      throw backendUnavailable(`${p.name} (${p.backend.name})`, err);
    }
  }
}

/** Keeps p in the set until it settles. */
function track<T>(set: Set<Promise<unknown>>, p: Promise<T>): Promise<T> {
  set.add(p);
  const settled = () => set.delete(p);
  p.then(settled, settled);
  return p;
}

/** a range of exactly one key: [k, k\0) */
function isSingleKey(r: KeyRange): boolean {
  return r.end !== undefined && r.end.length === r.start.length + 1 && r.end.at(-1) === 0 && compareBytes(r.start, r.end.subarray(0, -1)) === 0;
}

/** what each backend must return so the merged result can be filtered, sorted and cut */
function fetchOnly(r: RangeRequest): Partial<RangeRequest> {
  const f = rangeFetch(r);
  // each backend returns its first limit+1 keys: enough to fill the merged page and tell "more"
  return { limit: BigInt(f.limit), keysOnly: f.keysOnly, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n };
}
