// A SQLite file kept as a copy of a log of write batches (the NATS backend's local copy):
// each batch records, in its own database transaction, the log position the copy then
// holds, so the copy and its position never disagree. The log is the data, so the file
// is not synced (it can be rebuilt from the log and its snapshots).
import { rmSync } from "node:fs";
import type { WriteResult, WriteTx } from "../../mvcc/backend.ts";
import { SqlBackend } from "../sql/sql-backend.ts";
import { openSqliteDriver, type SqliteDriver } from "./sqlite.ts";
import { sqliteDialect } from "./sqlite-dialect.ts";
import { openSqlite } from "./sqlite-driver.ts";

export class LogCopy extends SqlBackend {
  private constructor(name: string, readonly file: string, driver: SqliteDriver) {
    super(name, driver, sqliteDialect);
  }

  static async open(name: string, file: string): Promise<LogCopy> {
    return new LogCopy(name, file, await openSqliteDriver(file, false));
  }

  /** the log position the copy holds: 0 for a new copy (recorded as such) */
  position(): Promise<number> {
    return this.db.driver.write(async (c) => {
      const [row] = await c.all("SELECT num FROM meta WHERE name = 'log_seq'");
      if (row) return Number(row.num);
      await c.run("INSERT INTO meta (name, num) VALUES ('log_seq', 0)");
      return 0;
    });
  }

  /**
   * Runs the batch as write() does; `append` runs last inside its database transaction
   * and returns the log position the copy holds with it (undefined: unchanged). When
   * `append` throws, the batch is rolled back.
   */
  writeThrough<T>(txns: Array<(tx: WriteTx) => Promise<T>>, keys: Uint8Array[], append: () => Promise<number | undefined>): Promise<WriteResult<T>[]> {
    return this.writes.write(txns, keys, async (c) => {
      const seq = await append();
      if (seq !== undefined) await c.run("UPDATE meta SET num = ? WHERE name = 'log_seq'", [BigInt(seq)]);
    });
  }

  /** Writes a consistent copy of the committed state to `to`, beside the writer; resolves to its log position. */
  async saveTo(to: string): Promise<number> {
    const db = await openSqlite(this.file);
    try {
      db.exec(`VACUUM INTO '${to.replaceAll("'", "''")}'`);
    } finally {
      db.close();
    }
    const saved = await openSqlite(to);
    try {
      const row = saved.prepare("SELECT num FROM meta WHERE name = 'log_seq'").get();
      if (!row) throw new Error(`${to}: the saved copy holds no log position`);
      return Number(row.num);
    } finally {
      saved.close();
    }
  }

  /** Closes the copy and removes its files. */
  async discard(): Promise<void> {
    await this.close().catch(() => {});
    for (const suffix of ["", "-wal", "-shm", ".lock"]) rmSync(this.file + suffix, { force: true });
  }
}
