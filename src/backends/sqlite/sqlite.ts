// The embedded default: one SQLite file in WAL mode. A writer connection runs the
// group-committed batches; reads see committed snapshots, so a read never sees a batch that
// is still being written, and nothing read is answered before it is on disk. Reads of one
// key use the event loop's reader connection; every other read runs on a read thread.
import { type BackendState, StorageFault } from "../../mvcc/backend.ts";
import { Mutex } from "../../util/mutex.ts";
import type { Row, SqlConn, SqlDriver, SqlValue } from "../sql/driver.ts";
import { ReadPool } from "../sql/read-pool.ts";
import { prepareSqlitePath } from "./sqlite-path.ts";
import { SqlBackend } from "../sql/sql-backend.ts";
import { sqliteConn, sqliteTransaction } from "./sqlite-conn.ts";
import { sqliteDialect } from "./sqlite-dialect.ts";
import { openSqlite, type SqliteDatabase } from "./sqlite-driver.ts";
import type { IntegrityReply, IntegrityRequest } from "./integrity-worker.ts";
import { WalCheckpointer } from "./wal-checkpointer.ts";
import { log } from "../../util/log.ts";
import { releaseWhenQuiet } from "../../util/memory-pressure.ts";
import { WalSync } from "./wal-sync.ts";

export class SqliteDriver implements SqlDriver {
  private readonly readLock = new Mutex();
  private readonly w: SqlConn;
  private readonly r: SqlConn;
  /** takes the page caches off the list of what a quiet process empties */
  private readonly keepCaches: () => void;

  constructor(
    private readonly writer: SqliteDatabase,
    private readonly reader: SqliteDatabase,
    private readonly lock: SqliteDatabase,
    /** puts commits on disk; absent when the copy need not survive a crash */
    private readonly wal: WalSync | undefined,
    private readonly writeLock: Mutex,
    private readonly checkpointer: WalCheckpointer,
  ) {
    this.w = sqliteConn(writer);
    this.r = sqliteConn(reader);
    // each connection's page cache (up to 2 MB) is read again from the file as it is used
    this.keepCaches = releaseWhenQuiet(() => {
      writer.exec("PRAGMA shrink_memory");
      reader.exec("PRAGMA shrink_memory");
    });
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

  /** Resolves once no commit is waiting for its fsync; throws after a failed one. */
  async onDisk(): Promise<void> {
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
    // before taking the lock: a running checkpoint's last pass needs it
    await this.checkpointer.close();
    this.keepCaches();
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
 * a copy that can be rebuilt from elsewhere (the NATS backend's).
 */
export async function openSqliteDriver(path: string, durable = true): Promise<SqliteDriver> {
  const lock = await lockExclusively(path, `sqlite://${path}`);
  const opened = [lock];
  try {
    const writer = await openSqlite(path);
    opened.push(writer);
    writer.exec("PRAGMA journal_mode = WAL");
    // NORMAL: SQLite syncs at checkpoints only; every commit is synced by WalSync before
    // it is acknowledged, so an acknowledged write survives power loss
    writer.exec(`PRAGMA synchronous = ${durable ? "NORMAL" : "OFF"}`);
    writer.exec("PRAGMA busy_timeout = 10000");
    const reader = await openSqlite(path);
    opened.push(reader);
    reader.exec("PRAGMA busy_timeout = 10000");
    const writeLock = new Mutex();
    const checkpointer = await WalCheckpointer.start(`sqlite://${path}`, path, durable, writeLock);
    writer.exec("PRAGMA wal_autocheckpoint = 0");
    const wal = durable ? new WalSync(`sqlite://${path}`, `${path}-wal`) : undefined;
    return new SqliteDriver(writer, reader, lock, wal, writeLock, checkpointer);
  } catch (err) {
    for (const db of opened.reverse()) db.close();
    throw err;
  }
}

export class SqliteBackend extends SqlBackend {
  readonly embedded = true;
  private stopCheck: () => void = () => {};

  private constructor(name: string, private readonly sqlite: SqliteDriver, threads: ReadPool) {
    super(name, sqlite, sqliteDialect, threads);
  }

  static async open(path: string): Promise<SqliteBackend> {
    const name = `sqlite://${path}`;
    prepareSqlitePath(path, name);
    try {
      const driver = await openSqliteDriver(path, true);
      return new SqliteBackend(name, driver, new ReadPool(name, { sqlite: path }));
    } catch (err) {
      // SQLite's own words ("unable to open database file") do not say which file
      const why = (err as Error).message;
      throw new Error(why.includes(path) ? why : `${name}: cannot open: ${why}`);
    }
  }

  /**
   * A read on a thread takes its snapshot at a moment this thread does not see, so instead
   * of waiting before it, its answer waits: until every commit made by the time it
   * arrives — all it can have seen — is on disk.
   */
  protected override threadReadSettled(): Promise<void> {
    return this.sqlite.onDisk();
  }

  override async open(): Promise<BackendState> {
    await this.checkIntegrity();
    const state = await super.open();
    // This process is the whole store: as etcd does when it restarts, give every lease
    // its full TTL again, so clients that could not reach a stopped server keep their keys.
    await this.db.driver.write((c) => c.run("UPDATE leases SET expires_at = ? + ttl * 1000", [BigInt(Date.now())]));
    return state;
  }

  /**
   * etcd refuses to start on a damaged backend; so does strata. quick_check reads every
   * page (it skips integrity_check's slow part, matching indexes to their tables) on a
   * thread of its own. A start waits for it up to INTEGRITY_WAIT_MS: a database too large
   * to read in that time is served meanwhile, and damage found later is reported as
   * damage found by a request is (DataLoss, writes refused, /readyz).
   */
  private async checkIntegrity(): Promise<void> {
    const path = this.name.slice("sqlite://".length);
    const started = performance.now();
    const { finding: check, stop } = quickCheck(path);
    const finding = await Promise.race([
      check,
      new Promise<undefined>((r) => {
        const timer = setTimeout(r, INTEGRITY_WAIT_MS);
        void check.finally(() => clearTimeout(timer));
      }),
    ]);
    const damaged = (f: string) => `the file ${path} is damaged (PRAGMA quick_check: ${f})`;
    if (finding === undefined) {
      log("warn", "the integrity check of the SQLite file goes on while strata serves", { backend: this.name, waitedMs: INTEGRITY_WAIT_MS });
      this.stopCheck = stop;
      void check.then((f) => {
        if (f === STOPPED) return;
        if (f !== "ok") this.db.reportFault(new StorageFault("corrupt", this.name, damaged(f)));
        else log("info", "integrity check of the SQLite file passed", { backend: this.name, ms: Math.round(performance.now() - started) });
      });
      return;
    }
    if (finding === "ok") return;
    throw new Error(
      `${damaged(finding)}; strata does not serve a damaged database: restore it from a backup, or salvage what is readable with: sqlite3 ${path} .recover | sqlite3 recovered.db`,
    );
  }

  override async close(): Promise<void> {
    // a check still reading ends with its thread
    this.stopCheck();
    await super.close();
  }
}

/** how long a start waits for the integrity check (a larger file is checked while served) */
const INTEGRITY_WAIT_MS = 5_000;

/** see wal-checkpointer.ts: beside this file from source, bundled in a compiled executable */
const INTEGRITY_WORKER_URL = import.meta.url.includes("/$bunfs/")
  ? new URL("./backends/sqlite/integrity-worker.ts", import.meta.url).href
  : new URL("./integrity-worker.ts", import.meta.url).href;

/** what a check stopped before it ended finds */
const STOPPED = "stopped";

/**
 * PRAGMA quick_check's first line, from a thread of its own ("ok": nothing found; an
 * error that stops the check is its finding), and a function that stops it.
 */
function quickCheck(path: string): { finding: Promise<string>; stop: () => void } {
  const worker = new Worker(INTEGRITY_WORKER_URL, { type: "module" });
  let done!: (finding: string) => void;
  const finding = new Promise<string>((resolve) => {
    done = (f) => {
      worker.terminate();
      // the first line that says what is wrong (SQLite heads its report with the schema's name)
      resolve(f.split("\n").find((line) => line.trim() !== "" && !line.startsWith("*** in database")) ?? f);
    };
  });
  worker.onmessage = (e: MessageEvent<IntegrityReply>) => done("finding" in e.data ? e.data.finding : e.data.error);
  worker.onerror = (e) => done(`the check's thread failed: ${e.message}`);
  worker.postMessage({ path } satisfies IntegrityRequest);
  return { finding, stop: () => done(STOPPED) };
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
