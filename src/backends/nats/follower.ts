// A process's copy of the NATS log (log.ts): a SQLite file (LogCopy) loaded from the
// newest snapshot and kept current by applying, in log order, every batch the log
// holds. Reads wait until the copy has caught up with what was appended before them;
// writes (writes.ts) hold the lock while they run a batch on the copy and append it.
import { join } from "node:path";
import type { JsMsg } from "nats";
import type { WriteTx } from "../../mvcc/backend.ts";
import type { Rev } from "../../mvcc/types.ts";
import { Mutex } from "../../util/mutex.ts";
import type { Mutation } from "../../gen/strata/nats/v1/log_pb.ts";
import { LogCopy } from "../sqlite/log-copy.ts";
import { Assembler } from "./chunks.ts";
import type { NatsLog } from "./log.ts";
import { decodeBatch, replay } from "./mutations.ts";
import type { Snapshots } from "./snapshots.ts";

/** how long a read or write waits for this process to read the log up to where it must */
const CATCH_UP_MS = 10_000;
/** how often a process that waits for the log checks that it is still arriving */
const STALL_CHECK_MS = 500;

/** a materialised copy of the log, and who is still reading it */
interface Copy {
  copy: LogCopy;
  readers: number;
  retired: boolean;
}

export class LogFollower {
  private current: Copy | undefined;
  private files = 0;
  /** the last log sequence this process has read; the copy holds every batch completed by then */
  seen = 0;
  readonly assembler = new Assembler();
  /** one writer of the copy at a time: this process's batches, other processes' batches, reloads */
  readonly lock = new Mutex();
  private queue: JsMsg[] = [];
  /** which follower delivers: messages of a stopped one are ignored */
  private follower = 0;
  private stopFollowing: () => void = () => {};
  private readonly watchdog = setInterval(() => void this.lock.run(() => this.unstall()).catch(() => {}), STALL_CHECK_MS);
  /** when this process last read something from the log */
  private progressAt = Date.now();
  private waiters: Array<{ seq: number; since: number; done: (err?: Error) => void }> = [];
  /** told whenever batches of other processes were applied (or the copy reloaded) */
  readonly listeners = new Set<() => void>();
  private compactions: Promise<void> = Promise.resolve();
  private failed: Error | undefined;
  /** whether the copy keeps the selector index (--selector-index) */
  indexing = false;

  constructor(
    private readonly name: string,
    readonly log: NatsLog,
    private readonly snapshots: Snapshots,
    /** the directory of this process's copies */
    private readonly dir: string,
  ) {
    this.watchdog.unref?.();
  }

  /** the copy reads are made on now, if one is loaded */
  get loaded(): LogCopy | undefined {
    return this.current?.copy;
  }

  /** a file for a copy or a snapshot, new in this process's directory */
  newFile(what: string): string {
    return join(this.dir, `${what}-${++this.files}.db`);
  }

  async start(): Promise<void> {
    await this.lock.run(() => this.load());
    await this.sync();
  }

  async stop(): Promise<void> {
    clearInterval(this.watchdog);
    this.stopFollowing();
    this.fail(new Error("closed"));
    await this.lock.run(async () => {}); // a batch being appended finishes first
    await this.compactions;
  }

  /** Closes the copy once its readers are done (after stop()). */
  async discard(): Promise<void> {
    if (this.current) await this.retire(this.current);
  }

  /** Loads the newest snapshot (or starts empty) and follows the log from there. Holds the lock. */
  private async load(): Promise<void> {
    this.stopFollowing();
    const file = this.newFile("copy");
    await this.snapshots.load(file);
    const copy = await LogCopy.open(this.name, file);
    copy.keepSelectorIndex(this.indexing);
    const loaded: Copy = { copy, readers: 0, retired: false };
    let seq: number;
    try {
      await copy.open();
      // a copy saved without the selector index: this process's own file, indexed here
      if (this.indexing) await copy.buildSelectIndex();
      seq = await copy.position();
      const { first } = await this.log.state();
      if (first > seq + 1) {
        throw new Error(`stream ${this.log.stream} starts at sequence ${first}, but its newest snapshot ends at ${seq}: the log was purged outside strata`);
      }
    } catch (err) {
      await this.retire(loaded);
      throw err;
    }
    const old = this.current;
    this.current = loaded;
    if (old) await this.retire(old);
    this.assembler.reset();
    this.advance(seq);
    await this.follow();
  }

  /** Follows the log from the first sequence this process has not read. Holds the lock. */
  private async follow(): Promise<void> {
    this.stopFollowing();
    this.queue = [];
    const follower = ++this.follower;
    this.stopFollowing = await this.log.follow(this.seen + 1, (m) => this.receive(follower, m));
  }

  /**
   * Someone waits for the log but nothing arrived since the last check: the log was
   * purged past this process (reload the snapshot), or its consumer was lost (follow
   * anew). The client library would find out too, but only after missed heartbeats.
   */
  private async unstall(): Promise<void> {
    const now = Date.now(), seen = this.seen;
    const stalled = this.waiters.some((w) => now - w.since >= STALL_CHECK_MS) && now - this.progressAt >= STALL_CHECK_MS;
    if (!stalled || this.failed) return;
    const { first, last } = await this.log.state();
    if (this.seen !== seen || last <= seen) return;
    if (first > seen + 1) return this.reload(first, seen);
    console.error(JSON.stringify({ level: "warn", msg: "NATS log not arriving; following it anew", backend: this.name, seen, last }));
    await this.follow();
  }

  private receive(follower: number, m: JsMsg): void {
    if (follower !== this.follower) return;
    this.queue.push(m);
    // one application job per run of messages: it takes every message queued by then
    if (this.queue.length === 1) void this.lock.run(() => this.applyQueued()).catch((err) => this.fail(err));
  }

  /** Applies the batches other processes appended. Holds the lock. */
  private async applyQueued(): Promise<void> {
    const messages = this.queue.splice(0);
    if (this.failed) return;
    const batches: Mutation[][] = [];
    let seen = this.seen;
    let complete = 0;
    for (const m of messages) {
      if (m.seq <= seen) continue; // appended by this process: applied already
      if (m.seq > seen + 1) {
        // purged past this process while it lagged: the newest snapshot covers the gap
        return this.reload(m.seq, seen);
      }
      seen = m.seq;
      const bytes = this.assembler.add(m.data, (k) => (m.headers?.has(k) ? m.headers.get(k) : undefined));
      if (bytes) {
        batches.push(decodeBatch(bytes));
        complete = m.seq;
      }
    }
    if (batches.length > 0) await this.apply(batches, complete);
    this.advance(seen);
    if (batches.length > 0) for (const l of this.listeners) l();
  }

  private async apply(batches: Mutation[][], seq: number): Promise<void> {
    let compacted: Rev | undefined;
    const [result] = await this.copy().writeThrough(
      [async (tx: WriteTx) => {
        for (const b of batches) compacted = (await replay(b, tx)) ?? compacted;
      }],
      [],
      async () => seq,
    );
    if (result && !result.ok) throw result.error;
    // another process compacted: remove the history here too
    if (compacted !== undefined) this.compactLocally(compacted);
  }

  private compactLocally(rev: Rev): void {
    this.compactions = this.compactions
      .then(() => this.reading((c) => c.compact(rev)))
      .catch((err) => console.error(JSON.stringify({ level: "error", msg: "compaction failed", backend: this.name, error: String(err) })));
  }

  private async reload(at: number, seen: number): Promise<void> {
    console.error(JSON.stringify({ level: "warn", msg: "NATS log purged past this process; reloading from the newest snapshot", backend: this.name, seen, next: at }));
    try {
      await this.load();
    } catch (err) {
      // not following now: the next wait for the log finds it stalled and tries again
      console.error(JSON.stringify({ level: "error", msg: "reloading the NATS snapshot failed", backend: this.name, error: String(err) }));
      return;
    }
    for (const l of this.listeners) l();
  }

  /** Notes that this process has read the log through seq. */
  advance(seq: number): void {
    if (seq > this.seen) this.progressAt = Date.now();
    this.seen = seq;
    this.waiters = this.waiters.filter((w) => (w.seq <= seq ? (w.done(), false) : true));
  }

  private fail(err: unknown): void {
    if (this.failed) return;
    this.failed = err instanceof Error && err.message === "closed" ? err : new Error(`the local copy of the log failed: ${String(err)}`);
    for (const w of this.waiters.splice(0)) w.done(this.failed);
  }

  /** Throws when the copy failed or was closed. */
  check(): void {
    if (this.failed) throw this.failed;
  }

  /** Resolves once this process has read the log through seq. */
  caughtUp(seq: number): Promise<void> {
    this.check();
    if (this.seen >= seq) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`did not read the log up to sequence ${seq} within ${CATCH_UP_MS / 1000} s (at ${this.seen})`));
      }, CATCH_UP_MS);
      const w = { seq, since: Date.now(), done: (err?: Error) => (clearTimeout(timer), err ? reject(err) : resolve()) };
      this.waiters.push(w);
    });
  }

  /** Catches up with everything appended before this call: reads after it are linearizable. */
  async sync(): Promise<void> {
    this.check();
    await this.caughtUp(await this.log.lastSeq());
  }

  /** the copy batches are written to (under the lock) */
  copy(): LogCopy {
    const current = this.current;
    if (!current) throw new Error(`${this.name}: no copy of the log is loaded`);
    return current.copy;
  }

  /** Runs fn on the current copy; a copy replaced meanwhile is closed once its last reader is done. */
  async reading<T>(fn: (copy: LogCopy) => Promise<T>): Promise<T> {
    this.check();
    const c = this.current;
    if (!c) throw new Error(`${this.name}: no copy of the log is loaded`);
    c.readers++;
    try {
      return await fn(c.copy);
    } finally {
      if (--c.readers === 0 && c.retired) await this.retire(c);
    }
  }

  private async retire(c: Copy): Promise<void> {
    c.retired = true;
    if (c.readers > 0) return;
    await c.copy.discard();
  }
}
