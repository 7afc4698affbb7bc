// The NATS JetStream backend. JetStream holds the data as a log of committed write
// batches (log.ts); every strata process keeps the log's state materialised in a private
// SQLite file through the SQL backend, and reads from it once it has caught up with the
// log. A write batch runs against that copy and is appended to the log with
// compare-and-swap on the log's last sequence; when another process appended first, the
// batch is rolled back, the copy catches up and the batch runs again. So every process
// applies the same batches in the same order and holds the same revisions.
import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { JsMsg } from "nats";
import type { AuthRecord, Backend, BackendState, DbSize, EventsOptions, EventsPage, WriteResult, WriteTx } from "../../mvcc/backend.ts";
import type { LeaseRecord, RangeQuery, RangeResult, Rev } from "../../mvcc/types.ts";
import { Mutex } from "../../util/mutex.ts";
import type { Mutation } from "../../gen/strata/nats/v1/log_pb.ts";
import type { SqlDriver } from "../sql/driver.ts";
import { SqlBackend } from "../sql/sql-backend.ts";
import { openSqliteDriver } from "../sql/sqlite.ts";
import { sqliteDialect } from "../sql/sqlite-dialect.ts";
import { openSqlite } from "../sql/sqlite-driver.ts";
import { AuthKv } from "./auth-kv.ts";
import { Assembler } from "./chunks.ts";
import { makeCopyDir } from "./copy-dir.ts";
import { LogMoved, NatsLog } from "./log.ts";
import { decodeBatch, encodeBatch, RecordingTx, replay } from "./mutations.ts";
import { Snapshots } from "./snapshots.ts";
import { type NatsUrl, parseNatsUrl } from "./url.ts";

/** how long a read or write waits for this process to read the log up to where it must */
const CATCH_UP_MS = 10_000;
/** how often a process that waits for the log checks that it is still arriving */
const STALL_CHECK_MS = 500;
/** how long a write lets another process finish a batch it is appending in chunks */
const CHUNKED_WRITE_GRACE_MS = 2_000;

/** a materialised copy of the log, and who is still reading it */
interface View {
  backend: SqlBackend;
  driver: SqlDriver;
  file: string;
  readers: number;
  retired: boolean;
}

export class NatsBackend implements Backend {
  private log!: NatsLog;
  private snapshots!: Snapshots;
  private auth!: AuthKv;
  private view: View | undefined;
  private dir: string | undefined;
  private files = 0;
  /** the last log sequence this process has read; the copy holds every batch completed by then */
  private seen = 0;
  private readonly assembler = new Assembler();
  /** one writer of the copy at a time: this process's batches, other processes' batches, reloads */
  private readonly lock = new Mutex();
  private queue: JsMsg[] = [];
  /** which follower delivers: messages of a stopped one are ignored */
  private follower = 0;
  private stopFollowing: () => void = () => {};
  private readonly watchdog = setInterval(() => void this.lock.run(() => this.unstall()).catch(() => {}), STALL_CHECK_MS);
  /** when this process last read something from the log */
  private progressAt = Date.now();
  private waiters: Array<{ seq: number; since: number; done: (err?: Error) => void }> = [];
  private readonly listeners = new Set<() => void>();
  private compactions: Promise<void> = Promise.resolve();
  private failed: Error | undefined;

  private constructor(
    readonly name: string,
    private readonly url: NatsUrl,
  ) {
    this.watchdog.unref?.();
  }

  /** Checks the URL; connects in open(). */
  static create(url: string, name: string): NatsBackend {
    return new NatsBackend(name, parseNatsUrl(url, name));
  }

  async open(): Promise<BackendState> {
    try {
      this.dir = await makeCopyDir();
      this.log = await NatsLog.open(this.url);
      this.snapshots = await Snapshots.open(this.log, this.url.bucket, this.url.replicas);
      this.auth = await AuthKv.open(this.log, this.url.bucket, this.url.replicas);
      await this.lock.run(() => this.load());
      await this.sync();
    } catch (err) {
      await this.close();
      throw err;
    }
    const { revision, compactRevision } = await this.reading((v) => v.backend.revisions());
    return { revision, compactRevision, clusterId: this.id("cluster"), memberId: this.id("member") };
  }

  /** the same for every process on this bucket, and new when the bucket is made anew */
  private id(what: string): bigint {
    const h = createHash("sha256").update(`${this.log.stream}\u0000${this.log.created}\u0000${what}`).digest();
    return h.readBigUInt64BE(0) & 0x7fffffffffffffffn;
  }

  /** whether its copy keeps the selector index (--selector-index) */
  private indexing = false;

  keepSelectorIndex(on: boolean): void {
    this.indexing = on;
  }

  async selectorIndex(): Promise<"off" | "complete" | "incomplete"> {
    return this.view ? this.view.backend.selectorIndex() : "off";
  }

  readAuth(): Promise<AuthRecord | undefined> {
    return this.auth.read();
  }

  authRevision(): Promise<Rev> {
    return this.auth.revision();
  }

  writeAuth(expected: Rev, next: AuthRecord): Promise<boolean> {
    return this.auth.write(expected, next);
  }

  async close(): Promise<void> {
    clearInterval(this.watchdog);
    this.stopFollowing();
    this.fail(new Error("closed"));
    await this.lock.run(async () => {}); // a batch being appended finishes first
    await this.compactions;
    await this.log?.close().catch(() => {});
    if (this.view) await this.retire(this.view);
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- following the log

  /** Loads the newest snapshot (or starts empty) and follows the log from there. Holds the lock. */
  private async load(): Promise<void> {
    this.stopFollowing();
    const file = join(this.dir!, `copy-${++this.files}.db`);
    await this.snapshots.load(file);
    const driver = await openSqliteDriver(file, false);
    const backend = new SqlBackend(this.name, driver, sqliteDialect);
    backend.keepSelectorIndex(this.indexing);
    const view: View = { backend, driver, file, readers: 0, retired: false };
    let seq: number;
    try {
      await backend.open();
      // a copy saved without the selector index: this process's own file, indexed here
      if (this.indexing) await backend.buildSelectIndex();
      seq = await driver.write(async (c) => {
        const rows = await c.all("SELECT num FROM meta WHERE name = 'log_seq'");
        if (rows[0]) return Number(rows[0].num);
        await c.run("INSERT INTO meta (name, num) VALUES ('log_seq', 0)");
        return 0;
      });
      const { first } = await this.log.state();
      if (first > seq + 1) {
        throw new Error(`stream ${this.log.stream} starts at sequence ${first}, but its newest snapshot ends at ${seq}: the log was purged outside strata`);
      }
    } catch (err) {
      await this.retire(view);
      throw err;
    }
    const old = this.view;
    this.view = view;
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
    const [result] = await this.view!.backend.write(
      [async (tx: WriteTx) => {
        for (const b of batches) compacted = (await replay(b, tx)) ?? compacted;
      }],
      [],
      async (c) => void (await c.run("UPDATE meta SET num = ? WHERE name = 'log_seq'", [BigInt(seq)])),
    );
    if (!result!.ok) throw result!.error;
    // another process compacted: remove the history here too
    if (compacted !== undefined) this.compactLocally(compacted);
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

  private advance(seq: number): void {
    if (seq > this.seen) this.progressAt = Date.now();
    this.seen = seq;
    this.waiters = this.waiters.filter((w) => (w.seq <= seq ? (w.done(), false) : true));
  }

  private fail(err: unknown): void {
    if (this.failed) return;
    this.failed = err instanceof Error && err.message === "closed" ? err : new Error(`the local copy of the log failed: ${String(err)}`);
    for (const w of this.waiters.splice(0)) w.done(this.failed);
  }

  private check(): void {
    if (this.failed) throw this.failed;
  }

  /** Resolves once this process has read the log through seq. */
  private caughtUp(seq: number): Promise<void> {
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
  private async sync(): Promise<void> {
    this.check();
    await this.caughtUp(await this.log.lastSeq());
  }

  /** Runs fn on the current copy; a copy replaced meanwhile is closed once its last reader is done. */
  private async reading<T>(fn: (v: View) => Promise<T>): Promise<T> {
    this.check();
    const v = this.view!;
    v.readers++;
    try {
      return await fn(v);
    } finally {
      if (--v.readers === 0 && v.retired) await this.retire(v);
    }
  }

  private async retire(v: View): Promise<void> {
    v.retired = true;
    if (v.readers > 0) return;
    await v.backend.close().catch(() => {});
    for (const suffix of ["", "-wal", "-shm", ".lock"]) rmSync(v.file + suffix, { force: true });
  }

  // ---- writes

  async write<T>(txns: Array<(tx: WriteTx) => Promise<T>>, keys: Uint8Array[] = []): Promise<WriteResult<T>[]> {
    for (;;) {
      await this.chunkedWriterDone();
      const out = await this.lock.run(() => this.writeOnce(txns, keys));
      if (!(out instanceof LogMoved)) return out;
      await this.caughtUp(out.last);
    }
  }

  /** Runs the batch on the copy and appends what it changed; LogMoved when another process got first. Holds the lock. */
  private async writeOnce<T>(txns: Array<(tx: WriteTx) => Promise<T>>, keys: Uint8Array[]): Promise<WriteResult<T>[] | LogMoved> {
    this.check();
    const mutations: Mutation[] = [];
    const recorded = txns.map((fn) => async (tx: WriteTx) => {
      const rec = new RecordingTx(tx);
      const value = await fn(rec);
      // a transaction that failed changed nothing
      mutations.push(...rec.mutations);
      return value;
    });
    let appended = this.seen;
    try {
      const results = await this.view!.backend.write(recorded, keys, async (c) => {
        if (mutations.length === 0) {
          // nothing to append, but the answers must be as fresh as a read's
          const last = await this.log.lastSeq();
          if (last > this.seen) throw new LogMoved(last);
          return;
        }
        appended = await this.log.append(encodeBatch(mutations), this.seen, crypto.randomUUID());
        await c.run("UPDATE meta SET num = ? WHERE name = 'log_seq'", [BigInt(appended)]);
      });
      if (appended > this.seen) {
        this.assembler.reset();
        this.advance(appended);
      }
      return results;
    } catch (err) {
      if (err instanceof LogMoved) return err;
      throw err;
    }
  }

  /** Gives a batch another process is appending in chunks time to finish before a write cuts it off. */
  private async chunkedWriterDone(): Promise<void> {
    for (;;) {
      const since = this.assembler.pendingSince;
      if (since === undefined || Date.now() - since >= CHUNKED_WRITE_GRACE_MS) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async renewLease(id: Rev, now: number): Promise<Rev> {
    const [r] = await this.write([async (tx) => {
      // an expired lease is gone, even before its keys have been deleted
      if (!(await tx.leaseExists(id)) || (await tx.leaseExpired(id, now))) return 0n;
      // the lock is held and this batch wrote nothing yet: the copy's lease row is current
      const lease = (await this.view!.backend.lease(id))!;
      await tx.leaseDelete(id);
      await tx.leaseInsert({ ...lease, expiresAt: now + Number(lease.ttl) * 1000 });
      return lease.ttl;
    }]);
    if (!r!.ok) throw r!.error;
    return r!.value;
  }

  // ---- compaction

  /**
   * Removes history here; once the log has grown by snapshot-count entries since the
   * newest snapshot, stores a new one (like etcd's --snapshot-count: making it holds this
   * process up for as long as SQLite takes to copy the data). Then purges the log up to
   * the newest snapshot.
   */
  async compact(rev: Rev): Promise<void> {
    await this.reading((v) => v.backend.compact(rev));
    let newest = await this.snapshots.newest();
    if (this.seen - newest >= this.url.snapshotCount) newest = await this.snapshot();
    // what another live process has not read yet stays: it would have to reload the snapshot
    if (newest > 0) await this.log.purgeThrough(Math.min(newest, await this.log.readByOthers()));
  }

  private compactLocally(rev: Rev): void {
    this.compactions = this.compactions
      .then(() => this.reading((v) => v.backend.compact(rev)))
      .catch((err) => console.error(JSON.stringify({ level: "error", msg: "compaction failed", backend: this.name, error: String(err) })));
  }

  /** Stores a snapshot of the copy; resolves to the log sequence it holds. */
  private async snapshot(): Promise<number> {
    const file = join(this.dir!, `snapshot-${++this.files}.db`);
    try {
      // a consistent copy of the committed state, made beside the writer
      await this.reading(async (v) => {
        const db = await openSqlite(v.file);
        try {
          db.exec(`VACUUM INTO '${file.replaceAll("'", "''")}'`);
        } finally {
          db.close();
        }
      });
      const db = await openSqlite(file);
      const seq = Number(db.prepare("SELECT num FROM meta WHERE name = 'log_seq'").get()!.num);
      db.close();
      await this.snapshots.save(file, seq);
      return seq;
    } finally {
      rmSync(file, { force: true });
    }
  }

  // ---- reads

  async range(q: RangeQuery): Promise<RangeResult> {
    await this.sync();
    return this.reading((v) => v.backend.range(q));
  }

  async revisions(): Promise<{ revision: Rev; compactRevision: Rev }> {
    await this.sync();
    return this.reading((v) => v.backend.revisions());
  }

  /** callers ask for revisions they know exist: the copy has them */
  events(from: Rev, to: Rev, limit: number, opts?: EventsOptions): Promise<EventsPage> {
    return this.reading((v) => v.backend.events(from, to, limit, opts));
  }

  /** the local copy's size */
  size(): Promise<DbSize> {
    return this.reading((v) => v.backend.size());
  }

  async leaseKeys(id: Rev): Promise<Uint8Array[]> {
    await this.sync();
    return this.reading((v) => v.backend.leaseKeys(id));
  }

  async leases(): Promise<LeaseRecord[]> {
    await this.sync();
    return this.reading((v) => v.backend.leases());
  }

  async lease(id: Rev): Promise<LeaseRecord | undefined> {
    await this.sync();
    return this.reading((v) => v.backend.lease(id));
  }

  async expiredLeases(now: number): Promise<Rev[]> {
    await this.sync();
    return this.reading((v) => v.backend.expiredLeases(now));
  }

  onExternalCommit(notify: () => void): () => void {
    this.listeners.add(notify);
    return () => this.listeners.delete(notify);
  }

  defragment(): Promise<void> {
    return this.reading((v) => v.backend.defragment());
  }
}
