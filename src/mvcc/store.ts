// One database's etcd semantics for the KV API: reads go straight to the backend; writes
// are queued and committed in batches (group commit), each client transaction keeping
// its own revision and compare result; committed events are published in revision order.
import type {
  CompactionRequest,
  DeleteRangeRequest,
  PutRequest,
  TxnRequest,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Backend, WriteTx } from "./backend.ts";
import { setImmediate } from "node:timers";
import { backendTimedOut, backendUnavailable, deadlineExceeded, EtcdError, errors, isRefusal } from "./errors.ts";
import { type Deadline, DEFAULT_REQUEST_TIMEOUT_MS, Liveness, requestDeadline } from "./deadline.ts";
import { isEmptyRange } from "./keyrange.ts";
import { Apply, txnKeys } from "./kv.ts";
import type { AutoGc } from "./auto-gc.ts";
import type { DeleteOut, PutOut, TxnOut } from "./responses.ts";
import { checkRevision } from "./revisions.ts";
import type { Event, RangeQuery, RangeResult, Rev } from "./types.ts";
import { Mutex } from "../util/mutex.ts";
import { PageCounts } from "./page-counts.ts";
import { LiveCounts } from "./live-counts.ts";
import { warmCounts } from "./count-warmup.ts";
import { log } from "../util/log.ts";

/** most client transactions committed in one database transaction */
const MAX_BATCH = 256;
/**
 * client requests, reads and writes each, that may wait on one database; more are refused
 * at once with etcd's "too many requests" (etcd refuses past 5000 entries committed but not applied)
 */
export const DEFAULT_MAX_WAITING = 5000;
/** events read back per step when catching up with other processes' commits */
const PUBLISH_EVENTS = 1000;
/** and about this many bytes, so large values do not make a page of a gigabyte */
const PUBLISH_BYTES = 8 * 1024 * 1024;

export interface Committed {
  revision: Rev;
  events: Event[];
}

/** A local commit and the revision it was made on top of. */
interface LocalCommit extends Committed {
  after: Rev;
}

/**
 * How this store numbers its revisions. With several backends each takes the revisions
 * congruent to its slot modulo their count, so no two backends ever use the same one.
 */
export interface RevisionSlot {
  slot: number;
  stride: number;
}

type Job = {
  run: (a: Apply) => Promise<unknown>;
  /** single keys it will read or write */
  keys: Uint8Array[];
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  /** its batch has gone to the database: from then on its outcome may be a commit */
  sent: boolean;
  /** it places or removes keys without events (a move between backends): see LiveCounts */
  unannounced: boolean;
};

/**
 * A transaction's commits, one per revision it wrote at: one, but for the storage-side
 * garbage collector's changes, each at a revision of its own (auto-gc.ts).
 */
function byRevision(after: Rev, end: Rev, events: Event[]): LocalCommit[] {
  const out: LocalCommit[] = [];
  for (let i = 0; i < events.length;) {
    const revision = events[i]!.kv.modRevision;
    const evs: Event[] = [];
    while (i < events.length && events[i]!.kv.modRevision === revision) evs.push(events[i++]!);
    out.push({ after, revision, events: evs });
    after = revision;
  }
  // a transaction that only advanced the revision: one commit without events
  if (out.length === 0 || out.at(-1)!.revision !== end) out.push({ after, revision: end, events: [] });
  return out;
}

export interface StoreOptions {
  numbering?: RevisionSlot;
  /** a request on a database server that stopped answering is answered by then (--request-timeout) */
  requestTimeoutMs?: number;
  /** client reads and writes each that may wait on this database (--max-waiting-requests) */
  maxWaiting?: number;
  /** storage-side garbage collection in the transactions that start it (--auto-gc) */
  autoGc?: AutoGc;
}

export class Store {
  /** the newest committed revision, published to watchers */
  revision: Rev = 0n;
  compactRevision: Rev = 0n;
  private queue: Job[] = [];
  private flushing = false;
  private compaction: Promise<void> = Promise.resolve();
  private readonly publishing = new Mutex();
  private readonly listeners: Array<(c: Committed) => void> = [];
  private readonly pageCounts = new PageCounts();
  private readonly liveCounts = new LiveCounts();
  /**
   * Raised when writes without events go to the database and when they end: a read that
   * saw it change may have counted before or after them, so its count is neither kept
   * nor trusted (such writes need not change the revision a count is checked against).
   */
  private unannouncedWrites = 0;
  private syncWaiting: Promise<void> | undefined;
  /** counting the large prefixes after opening (count-warmup.ts), until drained */
  private warming: Promise<void> = Promise.resolve();
  private stopWarming = false;
  private readonly liveness: Liveness;
  private readonly maxWaiting: number;
  /** client reads under way */
  private reading = 0;

  private readonly allocate: (after: Rev) => Rev;
  /** --auto-gc: its counts are the metric's */
  readonly autoGc: AutoGc | undefined;

  constructor(readonly backend: Backend, opts: StoreOptions = {}) {
    const numbering = opts.numbering ?? { slot: 0, stride: 1 };
    // an embedded database is never away: it has no probe
    this.liveness = new Liveness({
      timeoutMs: opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      probe: backend.embedded ? undefined : () => backend.revisions(),
    });
    this.maxWaiting = opts.maxWaiting ?? DEFAULT_MAX_WAITING;
    this.autoGc = opts.autoGc;
    const stride = BigInt(numbering.stride), slot = BigInt(numbering.slot);
    this.allocate = stride === 1n ? (after) => after + 1n : (after) => {
      const next = after + 1n;
      return next + ((slot - (next % stride)) % stride + stride) % stride;
    };
  }

  init(revision: Rev, compactRevision: Rev): void {
    this.revision = revision;
    this.compactRevision = compactRevision;
    this.liveCounts.lost(revision);
  }

  /** Called for every committed revision, in order, before the writer is answered. */
  onCommit(fn: (c: Committed) => void): void {
    this.listeners.push(fn);
  }

  /**
   * A read as the database answers it, before etcd's post-processing (range.ts): the keys
   * (or only their count) at one revision, in key order, or the key-values encoded when the
   * query allows it. `deadline`: a client's request, answered in bounded time while the
   * database is away. A query with a limit asks for one key more than its page holds
   * (rangeQuery): its page count is remembered for the next page (page-counts.ts).
   */
  async read(q: RangeQuery, deadline?: Deadline): Promise<RangeResult> {
    const kr = q.range;
    if (isEmptyRange(kr)) {
      const { revision, compactRevision } = await this.call(() => this.backend.revisions(), deadline);
      checkRevision(q.revision, revision, compactRevision);
      return { kvs: [], count: 0n, revision };
    }
    // a count is the range's, not a selection's; one kept current (live-counts.ts) holds
    // at the newest revision, one carried from the previous page at that page's
    const counted = !q.select && !q.uncounted;
    const paged = counted && q.limit > 0 ? this.pageCounts.get(kr) : undefined;
    const live = counted && !paged ? this.liveCounts.get(kr) : undefined;
    const epoch = this.unannouncedWrites;
    let res = await this.call(() => this.backend.range({ ...q, knownCount: paged ?? live }), deadline);
    const undisturbed = epoch === this.unannouncedWrites;
    if (live && !undisturbed) res = await this.call(() => this.backend.range(q), deadline);
    // a selection's count, or none read, says nothing of the range's next page
    if (!counted) return res;
    // a count the database made at the newest revision is kept current from then on
    if (!paged && !live && undisturbed && (q.revision === 0n || q.revision === res.revision)) this.liveCounts.learn(kr, res.revision, res.count);
    // the page's last key and how many keys it holds, when more follow
    let last: Uint8Array | undefined, returned = 0;
    if (res.encoded?.more) [last, returned] = [res.encoded.lastKey, res.encoded.count];
    else if (!res.encoded && q.limit > 0 && res.kvs.length >= q.limit) [last, returned] = [res.kvs[q.limit - 2]?.key, q.limit - 1];
    if (last) this.pageCounts.followPage(kr, last, returned, q.revision > 0n ? q.revision : res.revision, res.count);
    return res;
  }

  // `above`: number the write above this revision (another backend's, when there are several)

  put(p: PutRequest, above = 0n, deadline?: Deadline): Promise<PutOut> {
    return this.write(async (a) => {
      await a.advanceTo(above);
      await a.checkPut(p);
      const out = await a.put(p);
      await this.autoGc?.collect(a);
      await a.finish();
      return out;
    }, [p.key], deadline);
  }

  deleteRange(d: DeleteRangeRequest, above = 0n, deadline?: Deadline): Promise<DeleteOut> {
    return this.write(async (a) => {
      await a.advanceTo(above);
      const out = await a.deleteRange(d);
      await this.autoGc?.collect(a);
      out.header.revision = await a.finish();
      return out;
    }, d.rangeEnd.length === 0 ? [d.key] : [], deadline);
  }

  txn(r: TxnRequest, above = 0n, deadline?: Deadline): Promise<TxnOut> {
    return this.write(async (a) => {
      await a.advanceTo(above);
      const out = await a.txn(r);
      await this.autoGc?.collect(a);
      out.header = { revision: await a.finish() };
      return out;
    }, txnKeys(r), deadline);
  }

  /** Marks history below rev as compacted, then removes it in the background (or waits, if physical). */
  async compact(c: CompactionRequest): Promise<{ header: { revision: Rev } }> {
    const revision = await this.write(async (a) => {
      if (c.revision <= a.tx.compactRevision) throw errors.compacted();
      if (c.revision > a.beginRevision) throw errors.futureRevision();
      await a.tx.setCompactRevision(c.revision);
      return a.beginRevision;
    }, [], requestDeadline());
    this.compactRevision = c.revision;
    const done = (this.compaction = this.compaction.then(() =>
      this.backend.compact(c.revision).catch((err) => {
        log("error", "compaction failed", { revision: String(c.revision), error: String(err) });
      })
    ));
    if (c.physical) await done;
    return { header: { revision } };
  }

  /**
   * Runs fn with this database's history held: a compaction under way finishes first, and
   * those recorded meanwhile remove their history only after fn (a snapshot reading it).
   */
  holdHistory<T>(fn: () => Promise<T>): Promise<T> {
    const held = this.compaction.then(fn);
    this.compaction = held.then(() => undefined, () => undefined);
    return held;
  }

  /**
   * Raises the revision to at least target (committing nothing else), so later writes
   * here are numbered above it. Resolves once it is published.
   */
  advance(target: Rev): Promise<void> {
    return this.write((a) => a.advanceTo(target));
  }

  /**
   * Runs fn as one client transaction in the next group commit. fn sees the state left
   * by the transactions committed before it; an error it throws before writing fails it alone.
   * `keys`: single keys it will read or write, which the backend may fetch for the batch at once.
   * `deadline`: a client's request, answered by then while the database is silent (see
   * deadline.ts), and refused before it is queued when too many wait already.
   */
  write<T>(fn: (a: Apply) => Promise<T>, keys: Uint8Array[] = [], deadline?: Deadline, unannounced = false): Promise<T> {
    // shed before any work: a write refused here was never applied
    if (deadline && this.queue.length >= this.maxWaiting) return Promise.reject(errors.tooManyRequests());
    return new Promise<T>((resolve, reject) => {
      let unwatch = () => {};
      const job: Job = {
        run: fn,
        keys,
        resolve: (v) => (unwatch(), resolve(v as T)),
        reject: (e) => (unwatch(), reject(e)),
        sent: false,
        unannounced,
      };
      if (deadline) unwatch = this.liveness.watch(deadline, (client) => this.expire(job, client));
      this.queue.push(job);
      if (!this.flushing) {
        this.flushing = true;
        // let every request that arrived in this turn of the event loop join the batch
        setImmediate(() => void this.flush());
      }
    });
  }

  /**
   * A write's deadline passed while the database was silent, or the client's passed. One
   * still queued leaves the queue and is never applied; one whose batch was sent may still
   * commit, and is answered so (later answers to its promise are ignored; its commit is
   * published all the same).
   */
  private expire(job: Job, client: boolean): void {
    if (!job.sent) this.queue.splice(this.queue.indexOf(job), 1);
    job.reject(client ? deadlineExceeded() : backendTimedOut(this.backend.name, this.liveness.timeoutMs, job.sent ? "may have been applied" : "not applied"));
  }

  /**
   * Counts the keyspace's large prefixes in the background, so the first page of a large
   * list finds its count kept (count-warmup.ts). A server calls it once it has opened.
   */
  warmCounts(): void {
    this.warming = warmCounts((q) => this.read(q), () => this.stopWarming, (rev) => this.liveCounts.startEmpty(rev)).catch((err) => {
      log("debug", "counting the large prefixes at start failed; their first lists count", { backend: this.backend.name, error: String(err) });
    });
  }

  /** Resolves once every queued write has been committed or failed (for shutdown). */
  async drain(): Promise<void> {
    this.stopWarming = true;
    await this.warming;
    while (this.flushing || this.queue.length > 0) await new Promise((r) => setTimeout(r, 5));
    await this.compaction;
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        for (const job of batch) job.sent = true;
        // keys placed or removed without events: no kept count holds from now on
        const unannounced = batch.some((job) => job.unannounced);
        if (unannounced) this.liveCounts.lost(this.revision);
        if (unannounced) this.unannouncedWrites++;
        const applies: Apply[] = [];
        let results;
        try {
          results = await this.backend.write(batch.map((job, i) => (tx: WriteTx) => {
            const a = new Apply(tx, this.allocate);
            // by position: a backend that retries the batch runs a transaction again
            applies[i] = a;
            return job.run(a);
          }), batch.flatMap((job) => job.keys));
        } catch (err) {
          if (isRefusal(err)) this.liveness.answered();
          const e = err instanceof EtcdError ? err : backendUnavailable(this.backend.name, err);
          if (unannounced) this.unannouncedWrites++;
          for (const job of batch) job.reject(e);
          continue;
        }
        this.liveness.answered();
        const committed = results.flatMap((res, i) => {
          const a = applies[i]!;
          return res.ok && a.endRevision > a.tx.revision ? byRevision(a.tx.revision, a.endRevision, a.events) : [];
        });
        await this.publish(committed);
        if (unannounced) {
          this.liveCounts.lost(this.revision);
          this.unannouncedWrites++;
        }
        results.forEach((res, i) => (res.ok ? batch[i]!.resolve(res.value) : batch[i]!.reject(res.error)));
      }
    } finally {
      this.flushing = false;
    }
  }

  /**
   * Publishes this process's commits in revision order. When other processes committed
   * revisions in between, those (and these) are read back from the database instead.
   */
  private publish(local: LocalCommit[]): Promise<void> {
    return this.publishing.run(async () => {
      if (local.length === 0) return;
      if (local[0]!.after === this.revision) {
        for (const c of local) this.announce(c);
      } else {
        await this.readCommits(local.at(-1)!.revision);
      }
    });
  }

  /**
   * Brings this process up to the database's revision: commits made by other processes.
   * Notifications come in bursts: one sync that has not started yet answers them all.
   */
  syncExternal(): Promise<void> {
    return (this.syncWaiting ??= this.publishing.run(async () => {
      this.syncWaiting = undefined;
      const { revision, compactRevision } = await this.backend.revisions();
      // the SQL backends poll here every second: the database is known alive even when idle
      this.liveness.answered();
      if (compactRevision > this.compactRevision) this.compactRevision = compactRevision;
      if (revision > this.revision) await this.readCommits(revision);
    }));
  }

  private async readCommits(upTo: Rev): Promise<void> {
    while (this.revision < upTo) {
      const { events, through, compactRevision } = await this.backend.events(this.revision + 1n, upTo, PUBLISH_EVENTS, { bytes: PUBLISH_BYTES });
      if (compactRevision > this.compactRevision) this.compactRevision = compactRevision;
      for (let i = 0; i < events.length;) {
        const revision = events[i]!.kv.modRevision;
        const evs: Event[] = [];
        while (i < events.length && events[i]!.kv.modRevision === revision) evs.push(events[i++]!);
        this.announce({ revision, events: evs }, false);
      }
      // revisions without events (compacted away before this process saw them, or only
      // advanced) are announced as the page's end; the hub cancels watchers that needed
      // compacted history
      if (through > this.revision) this.announce({ revision: through, events: [] }, false);
    }
  }

  /** `own`: a commit of this process, whose events are all its changes */
  private announce(c: Committed, own = true): void {
    this.revision = c.revision;
    // another process's commits may be known only in part (history compacted before they were read)
    if (own) this.liveCounts.published(c.revision, c.events);
    else this.liveCounts.lost(c.revision);
    for (const l of this.listeners) l(c);
  }

  /**
   * A call on the backend outside the key-value path (the lease keeper's, for a client):
   * answered as a read is — its errors name the backend, and it is answered by the
   * deadline while the database is silent.
   */
  backendCall<T>(fn: (b: Backend) => Promise<T>, deadline: Deadline = requestDeadline()): Promise<T> {
    return this.call(() => fn(this.backend), deadline);
  }

  /**
   * A read; with a deadline (a client's), refused at once when too many are under way, and
   * answered by the deadline while the database is silent (the read itself is abandoned).
   */
  private async call<T>(fn: () => Promise<T>, deadline?: Deadline): Promise<T> {
    if (deadline && this.reading >= this.maxWaiting) throw errors.tooManyRequests();
    let unwatch = () => {};
    const expired = new Promise<never>((_, reject) => {
      if (deadline) {
        this.reading++;
        unwatch = this.liveness.watch(deadline, (client) =>
          reject(client ? deadlineExceeded() : backendTimedOut(this.backend.name, this.liveness.timeoutMs))
        );
      }
    });
    try {
      const out = await (deadline ? Promise.race([fn(), expired]) : fn());
      this.liveness.answered();
      return out;
    } catch (err) {
      if (isRefusal(err)) this.liveness.answered();
      if (err instanceof EtcdError) throw err;
      throw backendUnavailable(this.backend.name, err);
    } finally {
      if (deadline) this.reading--;
      unwatch();
    }
  }
}
