// The embedded default: one SQLite file in WAL mode. A writer connection runs the
// group-committed batches; reads see committed snapshots, so a read never sees a batch that
// is still being written, and nothing read is answered before it is on disk. Reads of one
// key use the event loop's reader connection; every other read runs on a read thread.
import type { BackendState, EventsOptions, EventsPage } from "../backend.ts";
import { isSingleKey } from "../../engine/keyrange.ts";
import { Mutex } from "../../engine/mutex.ts";
import type { RangeQuery, RangeResult, Rev } from "../../engine/types.ts";
import type { Row, SqlConn, SqlDriver, SqlValue } from "./driver.ts";
import { READ_THREADS, ReadPool } from "./read-pool.ts";
import { SqlBackend } from "./sql-backend.ts";
import { sqliteConn, sqliteTransaction } from "./sqlite-conn.ts";
import { sqliteDialect } from "./sqlite-dialect.ts";
import { openSqlite, type SqliteDatabase } from "./sqlite-driver.ts";
import { WalCheckpointer } from "./wal-checkpointer.ts";
import { WalSync } from "./wal-sync.ts";

export class SqliteDriver implements SqlDriver {
  private readonly readLock = new Mutex();
  private readonly w: SqlConn;
  private readonly r: SqlConn;

  constructor(
    private readonly writer: SqliteDatabase,
    private readonly reader: SqliteDatabase,
    private readonly lock: SqliteDatabase,
    /** puts commits on disk; absent when the copy need not survive a crash */
    private readonly wal: WalSync | undefined,
    private readonly writeLock: Mutex,
    private readonly checkpointer: WalCheckpointer,
    /** the read threads, when this copy has any */
    private readonly pool: ReadPool | undefined,
  ) {
    this.w = sqliteConn(writer);
    this.r = sqliteConn(reader);
  }

  write<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return this.writeLock.run(async () => {
      // after a failed fsync nothing more is written
      this.wal?.unsynced();
      const result = await sqliteTransaction(this.writer, "BEGIN IMMEDIATE", () => fn(this.w));
      await this.wal?.sync();
      this.checkpointer.committed();
      return result;
    });
  }

  read<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return this.readLock.run(async () => {
      // the snapshot is taken by the read's first statement, in the same turn as this check
      await this.onDisk();
      return sqliteTransaction(this.reader, "BEGIN", () => fn(this.r));
    });
  }

  query(sql: string, params: SqlValue[] = []): Promise<Row[]> {
    return this.readLock.run(async () => {
      await this.onDisk();
      return this.r.all(sql, params);
    });
  }

  /**
   * A read on a read thread (or on the reader connection, without threads). Its snapshot
   * is taken on the thread at a moment this thread does not see, so instead of waiting
   * before it, its answer waits: until every commit made by the time it arrives — all it
   * can have seen — is on disk.
   */
  async onThread<T>(read: (pool: ReadPool) => Promise<T>, here: () => Promise<T>): Promise<T> {
    if (!this.pool) return here();
    const result = await read(this.pool);
    await this.onDisk();
    return result;
  }

  /** Resolves once no commit is waiting for its fsync; throws after a failed one. */
  private async onDisk(): Promise<void> {
    for (let commit = this.wal?.unsynced(); commit; commit = this.wal?.unsynced()) await commit;
  }

  exec(sql: string): Promise<void> {
    return this.writeLock.run(async () => {
      this.writer.exec(sql);
      await this.wal?.sync();
      this.checkpointer.committed();
    });
  }

  async close(): Promise<void> {
    await this.pool?.close();
    // before taking the lock: a running checkpoint's last pass needs it
    await this.checkpointer.close();
    await this.writeLock.run(async () => {
      this.reader.close();
      this.writer.close();
      this.lock.close();
      this.wal?.close();
    });
  }
}

/**
 * The driver over one SQLite file, locked to this process. Not `durable`: no fsync, for
 * a copy that can be rebuilt from elsewhere (the NATS backend's). `readThreads`: threads
 * for onThread's reads (none: they run on the event loop's reader connection).
 */
export async function openSqliteDriver(path: string, durable = true, readThreads = 0): Promise<SqliteDriver> {
  const lock = await lockExclusively(path, `sqlite://${path}`);
  const writer = await openSqlite(path);
  writer.exec("PRAGMA journal_mode = WAL");
  // NORMAL: SQLite syncs at checkpoints only; every commit is synced by WalSync before
  // it is acknowledged, so an acknowledged write survives power loss
  writer.exec(`PRAGMA synchronous = ${durable ? "NORMAL" : "OFF"}`);
  writer.exec("PRAGMA busy_timeout = 10000");
  const reader = await openSqlite(path);
  reader.exec("PRAGMA busy_timeout = 10000");
  const writeLock = new Mutex();
  let checkpointer: WalCheckpointer;
  try {
    checkpointer = await WalCheckpointer.start(`sqlite://${path}`, path, durable, writeLock);
  } catch (err) {
    for (const db of [reader, writer, lock]) db.close();
    throw err;
  }
  writer.exec("PRAGMA wal_autocheckpoint = 0");
  let pool: ReadPool | undefined;
  try {
    pool = readThreads > 0 ? await ReadPool.start(`sqlite://${path}`, path, readThreads) : undefined;
  } catch (err) {
    await checkpointer.close();
    for (const db of [reader, writer, lock]) db.close();
    throw err;
  }
  const wal = durable ? new WalSync(`sqlite://${path}`, `${path}-wal`) : undefined;
  return new SqliteDriver(writer, reader, lock, wal, writeLock, checkpointer, pool);
}

export class SqliteBackend extends SqlBackend {
  private constructor(name: string, private readonly sqlite: SqliteDriver) {
    super(name, sqlite, sqliteDialect);
  }

  static async open(path: string): Promise<SqliteBackend> {
    return new SqliteBackend(`sqlite://${path}`, await openSqliteDriver(path, true, READ_THREADS));
  }

  /** One key costs less to read than the trip to a thread; a range's cost is the client's choice. */
  override range(q: RangeQuery): Promise<RangeResult> {
    if (isSingleKey(q.range)) return super.range(q);
    return this.sqlite.onThread((pool) => pool.range(q), () => super.range(q));
  }

  override events(from: Rev, to: Rev, limit: number, opts: EventsOptions = {}): Promise<EventsPage> {
    return this.sqlite.onThread((pool) => pool.events(from, to, limit, opts), () => super.events(from, to, limit, opts));
  }

  override async open(): Promise<BackendState> {
    const state = await super.open();
    // This process is the whole store: as etcd does when it restarts, give every lease
    // its full TTL again, so clients that could not reach a stopped server keep their keys.
    await this.driver.write((c) => c.run("UPDATE leases SET expires_at = ? + ttl * 1000", [BigInt(Date.now())]));
    return state;
  }
}

/**
 * One strata process per SQLite file: revisions and watch events live in the process,
 * so a second one would serve stale answers. The lock is an exclusive transaction held
 * open on a small side file; the operating system releases it when the process dies.
 */
async function lockExclusively(path: string, name: string): Promise<SqliteDatabase> {
  const lock = await openSqlite(`${path}.lock`);
  try {
    lock.exec("PRAGMA busy_timeout = 0");
    lock.exec("BEGIN EXCLUSIVE");
    return lock;
  } catch {
    lock.close();
    throw new Error(`${name} is in use by another strata process (its lock file ${path}.lock is held)`);
  }
}
