// The NATS JetStream backend. JetStream holds the data as a log of committed write
// batches (log.ts); every strata process keeps the log's state materialised in a private
// SQLite file (follower.ts), and reads from it once it has caught up with the log. A
// write batch runs against that copy and is appended to the log (writes.ts); history and
// compaction are the copy's, with snapshots that let the log be purged (history.ts); the
// auth store is a key-value bucket of its own (auth-kv.ts).
import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import type { AuthRecord, Backend, BackendState, DbSize, EventsOptions, EventsPage, WriteResult, WriteTx } from "../../mvcc/backend.ts";
import type { LeaseRecord, RangeQuery, RangeResult, Rev } from "../../mvcc/types.ts";
import { AuthKv } from "./auth-kv.ts";
import { makeCopyDir } from "./copy-dir.ts";
import { LogFollower } from "./follower.ts";
import { NatsHistory } from "./history.ts";
import { NatsLog } from "./log.ts";
import { Snapshots } from "./snapshots.ts";
import { type NatsUrl, parseNatsUrl } from "./url.ts";
import { NatsWrites } from "./writes.ts";

/** what open() connects: the log, this process's copy of it, and the views over them */
interface Opened {
  log: NatsLog;
  follower: LogFollower;
  writes: NatsWrites;
  history: NatsHistory;
  auth: AuthKv;
}

export class NatsBackend implements Backend {
  private opened: Opened | undefined;
  private dir: string | undefined;
  private log: NatsLog | undefined;
  private follower: LogFollower | undefined;
  /** whether its copy keeps the selector index (--selector-index) */
  private indexing = false;

  private constructor(
    readonly name: string,
    private readonly url: NatsUrl,
  ) {}

  /** Checks the URL; connects in open(). */
  static create(url: string, name: string): NatsBackend {
    return new NatsBackend(name, parseNatsUrl(url, name));
  }

  async open(): Promise<BackendState> {
    try {
      const dir = (this.dir = await makeCopyDir());
      const log = (this.log = await NatsLog.open(this.url));
      const snapshots = await Snapshots.open(log, this.url.bucket, this.url.replicas);
      const auth = await AuthKv.open(log, this.url.bucket, this.url.replicas);
      const follower = (this.follower = new LogFollower(this.name, log, snapshots, dir));
      follower.indexing = this.indexing;
      await follower.start();
      const history = new NatsHistory(follower, snapshots, this.url.snapshotCount);
      this.opened = { log, follower, writes: new NatsWrites(follower), history, auth };
    } catch (err) {
      await this.close();
      throw err;
    }
    const { revision, compactRevision } = await this.parts.follower.reading((c) => c.revisions());
    return { revision, compactRevision, clusterId: this.id("cluster"), memberId: this.id("member") };
  }

  /** the views once open() connected them */
  private get parts(): Opened {
    if (!this.opened) throw new Error(`${this.name} is not open`);
    return this.opened;
  }

  /** the same for every process on this bucket, and new when the bucket is made anew */
  private id(what: string): bigint {
    const { log } = this.parts;
    const h = createHash("sha256").update(`${log.stream}\u0000${log.created}\u0000${what}`).digest();
    return h.readBigUInt64BE(0) & 0x7fffffffffffffffn;
  }

  async close(): Promise<void> {
    await this.follower?.stop();
    await this.log?.close().catch(() => {});
    await this.follower?.discard();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** Reads of the copy once it caught up with everything appended before the call: linearizable. */
  private async current<T>(read: (f: LogFollower) => Promise<T>): Promise<T> {
    const { follower } = this.parts;
    await follower.sync();
    return read(follower);
  }

  // ReadView
  range(q: RangeQuery): Promise<RangeResult> {
    return this.current((f) => f.reading((c) => c.range(q)));
  }
  revisions(): Promise<{ revision: Rev; compactRevision: Rev }> {
    return this.current((f) => f.reading((c) => c.revisions()));
  }

  // WriteView
  write<T>(txns: Array<(tx: WriteTx) => Promise<T>>, keys?: Uint8Array[]): Promise<WriteResult<T>[]> {
    return this.parts.writes.write(txns, keys);
  }

  // HistoryView
  events(from: Rev, to: Rev, limit: number, opts?: EventsOptions): Promise<EventsPage> {
    return this.parts.history.events(from, to, limit, opts);
  }
  compact(rev: Rev): Promise<void> {
    return this.parts.history.compact(rev);
  }
  onExternalCommit(notify: () => void): () => void {
    return this.parts.history.onExternalCommit(notify);
  }

  // LeaseView
  leaseKeys(id: Rev): Promise<Uint8Array[]> {
    return this.current((f) => f.reading((c) => c.leaseKeys(id)));
  }
  leases(): Promise<LeaseRecord[]> {
    return this.current((f) => f.reading((c) => c.leases()));
  }
  lease(id: Rev): Promise<LeaseRecord | undefined> {
    return this.current((f) => f.reading((c) => c.lease(id)));
  }
  renewLease(id: Rev, now: number): Promise<Rev> {
    return this.parts.writes.renewLease(id, now);
  }
  expiredLeases(now: number): Promise<Rev[]> {
    return this.current((f) => f.reading((c) => c.expiredLeases(now)));
  }

  // AdminView
  /** the local copy's size */
  size(): Promise<DbSize> {
    return this.parts.follower.reading((c) => c.size());
  }
  defragment(): Promise<void> {
    return this.parts.follower.reading((c) => c.defragment());
  }
  keepSelectorIndex(on: boolean): void {
    this.indexing = on;
    if (this.follower) this.follower.indexing = on;
  }
  async selectorIndex(): Promise<"off" | "complete" | "incomplete"> {
    const copy = this.follower?.loaded;
    return copy ? copy.selectorIndex() : "off";
  }

  // AuthView
  readAuth(): Promise<AuthRecord | undefined> {
    return this.parts.auth.read();
  }
  authRevision(): Promise<Rev> {
    return this.parts.auth.revision();
  }
  writeAuth(expected: Rev, next: AuthRecord): Promise<boolean> {
    return this.parts.auth.write(expected, next);
  }
}
