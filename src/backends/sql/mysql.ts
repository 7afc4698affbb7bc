// MySQL and MariaDB (and wire-compatible engines) on mysql2. Writers serialize on the
// meta revision row (SELECT ... FOR UPDATE, READ COMMITTED); reads run in consistent
// snapshots. MySQL has no notifications: other processes' commits are found by polling.
// TiDB speaks the same wire under a profile (engine-profiles.ts) without named locks.
import { readFileSync } from "node:fs";
import mysql from "mysql2/promise";
import { type Dialect, errorParts } from "./dialect.ts";
import { Pending, plainSavepoint, type Row, type SqlConn, type SqlDriver, type SqlValue } from "./driver.ts";
import { READ_THREADS, ReadPool } from "./read-pool.ts";
import { type EngineProfile, noDefragment, storedBytes } from "./engine-profiles.ts";
import { retrying } from "./retrying-driver.ts";
import { oneRow } from "./rows.ts";
import { SqlBackend } from "./sql-backend.ts";

/** MySQL indexes at most 3072 bytes; keys are indexed together with a revision */
export const MAX_KEY_BYTES = 2048;

export const mysqlDialect: Dialect = {
  name: "mysql",
  keyType: `VARBINARY(${MAX_KEY_BYTES})`,
  maxKeyBytes: MAX_KEY_BYTES,
  valueType: "LONGBLOB",
  intType: "BIGINT",
  indexTextType: "VARBINARY(128)",
  packedTextType: "MEDIUMBLOB",
  contains: (hay, needle) => `INSTR(${hay}, ${needle}) > 0`,
  insertIgnoring: ["INSERT IGNORE INTO", ""],
  tableOptions: " ENGINE=InnoDB",
  keyOnlyTableOptions: " ENGINE=InnoDB",
  // InnoDB keeps kv's rows, values and all, in its primary key: counting a range there
  // read every value (0.4 s for 50,000 pods); an index of the keys alone counts them
  dropIndex: (index, table) => `DROP INDEX ${index} ON ${table}`,
  countKv: "kv FORCE INDEX (kv_key)",
  countKvIndex: ["CREATE INDEX kv_key ON kv (k)"],
  upsertKv: `INSERT INTO kv (k, create_rev, mod_rev, version, lease, v)
             SELECT k, create_rev, rev, version, lease, v FROM kv_log WHERE rev = ? AND sub = ?
             ON DUPLICATE KEY UPDATE create_rev = VALUES(create_rev), mod_rev = VALUES(mod_rev),
               version = VALUES(version), lease = VALUES(lease), v = VALUES(v)`,
  lockMeta: (c) => c.all("SELECT name, num FROM meta FOR UPDATE"),
  async lockSchema(c) {
    // a named lock outlives the implicit commits MySQL makes around DDL
    await c.all("SELECT GET_LOCK('strata_schema', 60) AS locked");
  },
  async unlockSchema(c) {
    await c.all("SELECT RELEASE_LOCK('strata_schema') AS released");
  },
  async size(c) {
    const r = oneRow(await c.all(
      `SELECT COALESCE(SUM(data_length + index_length + data_free), 0) AS size,
              COALESCE(SUM(data_length + index_length), 0) AS in_use
         FROM information_schema.tables WHERE table_schema = DATABASE()`,
    ));
    return { size: r.size as bigint, inUse: r.in_use as bigint };
  },
  async defragment(d) {
    await d.exec("OPTIMIZE TABLE kv_log, kv, leases, meta");
  },
  pollMs: 100,
  // 1114 "The table … is full", 1021 "Disk full", and OS errno 28 (ENOSPC) inside other
  // errors; 1194/1195 a table marked as crashed, 1877 ER_TABLE_CORRUPT
  fault(err) {
    const { errno, message } = errorParts(err);
    if (errno === 1114 || errno === 1021 || /The table .* is full|[Ee]rr(no|code): 28\b|No space left on device/.test(message)) return "full";
    if (errno === 1194 || errno === 1195 || errno === 1877) return "corrupt";
    return undefined;
  },
};

/** MySQL's dialect for an engine without named locks: schema changes go through the lease row; TiKV compacts itself. */
export function profileDialect(profile: EngineProfile): Dialect {
  // TiDB's information_schema.tables holds estimates from statistics: the rows are counted
  return { ...mysqlDialect, lockSchema: undefined, unlockSchema: undefined, schemaLease: true, pollMs: profile.pollMs, size: storedBytes, defragment: noDefragment };
}

/** how transactions begin: the statements before their first; an engine profile's own otherwise */
const BEGIN = {
  write: ["SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "START TRANSACTION"],
  read: ["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"],
};

/** mysql2 escapes values itself; bigints must stay exact numbers, bytes must be Buffers */
function param(v: SqlValue): unknown {
  if (typeof v === "bigint") return { toSqlString: () => v.toString() };
  if (v instanceof Uint8Array && !Buffer.isBuffer(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return v;
}

/**
 * Buffered writes go out before they pass this size, under the smallest default
 * max_allowed_packet (4 MiB in MySQL 5.7, 16 MiB in MariaDB and 64 MiB in MySQL 8; one
 * statement is at most ~3 MiB, a largest value written out in hex): deleting 60,000 keys
 * at once made one query of ~18 MiB, and the server refused it.
 */
const FLUSH_BYTES = 1024 * 1024;

/**
 * A connection whose sent writes wait in a buffer and go out with the next statement in
 * one multi-statement query (mysql2 does not pipeline): a transaction's writes cost no
 * round trips of their own. A failed statement stops the query, and the caller sees it.
 */
class BufferedConn implements SqlConn {
  private buffered: string[] = [];
  private bufferedBytes = 0;
  /** buffers that went out on their own because they grew large */
  private readonly flushed = new Pending();

  constructor(private readonly q: mysql.PoolConnection) {}

  private async query(sql: string, params: SqlValue[]): Promise<unknown> {
    // nothing may follow a write that failed (COMMIT least of all)
    await this.flushed.settle();
    const statement = this.q.format(sql, params.map(param));
    if (this.buffered.length === 0) return (await this.q.query(statement))[0];
    const all = this.take(statement);
    return ((await this.q.query(all))[0] as unknown[]).at(-1);
  }

  private take(last?: string): string {
    if (last !== undefined) this.buffered.push(last);
    this.bufferedBytes = 0;
    return this.buffered.splice(0).join(";\n");
  }

  all = async (sql: string, params: SqlValue[] = []) => (await this.query(sql, params)) as Row[];
  run = async (sql: string, params: SqlValue[] = []) => ((await this.query(sql, params)) as mysql.ResultSetHeader).affectedRows;
  send = (sql: string, params: SqlValue[] = []) => {
    const statement = this.q.format(sql, params.map(param));
    // mysql2 runs a connection's queries in the order they were given
    if (this.buffered.length > 0 && this.bufferedBytes + statement.length > FLUSH_BYTES) this.flushed.add(this.q.query(this.take()));
    this.buffered.push(statement);
    this.bufferedBytes += statement.length;
  };
  savepoint = <T>(fn: (c: SqlConn) => Promise<T>): Promise<T> => plainSavepoint(this, fn);
}

class MysqlDriver implements SqlDriver {
  constructor(private readonly pool: mysql.Pool, private readonly begin: EngineProfile["begin"] = BEGIN) {}

  private async transaction<T>(setup: string[], fn: (c: SqlConn) => Promise<T>): Promise<T> {
    const q = await this.pool.getConnection();
    try {
      const c = new BufferedConn(q);
      // the setup goes out with the first statement, the last writes with COMMIT
      for (const s of setup) c.send(s);
      const result = await fn(c);
      await c.run("COMMIT");
      return result;
    } catch (err) {
      await q.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      q.release();
    }
  }

  write<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return this.transaction(this.begin.write, fn);
  }

  read<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return this.transaction(this.begin.read, fn);
  }

  async query(sql: string, params: SqlValue[] = []): Promise<Row[]> {
    // autocommit: InnoDB gives the statement its own consistent read
    return (await this.pool.query(sql, params.map(param)))[0] as Row[];
  }

  async exec(sql: string): Promise<void> {
    await this.pool.query(sql);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** A pool of `poolSize` connections to the database at `url` (mysql://). */
export function openMysqlDriver(url: string, poolSize: number, begin?: EngineProfile["begin"]): MysqlDriver {
  const u = new URL(url);
  const ssl = u.searchParams.get("ssl") ?? u.searchParams.get("tls");
  const pool = mysql.createPool({
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database: u.pathname.replace(/^\//, ""),
    connectionLimit: poolSize,
    // a transaction's buffered writes travel with its next statement (all SQL is strata's own)
    multipleStatements: true,
    connectTimeout: 5000,
    supportBigNumbers: true,
    bigNumberStrings: true,
    // TLS from the URL: ?ssl=true (verify the server) or ?ssl=skip-verify, with files as
    // the mysql client's --ssl-ca, --ssl-cert, --ssl-key
    ssl: ssl && ssl !== "false" ? { rejectUnauthorized: ssl !== "skip-verify", ...tlsFiles(u) } : undefined,
    // idle connections kept, and how long (s) one may stay idle: HariKube's connectionPool
    ...(u.searchParams.has("max-idle") && { maxIdle: Number(u.searchParams.get("max-idle")) }),
    ...(u.searchParams.has("idle-timeout") && { idleTimeout: Number(u.searchParams.get("idle-timeout")) * 1000 }),
    // integers as exact bigints, whatever their size
    typeCast(field, next) {
      if (field.type === "LONGLONG" || field.type === "NEWDECIMAL") {
        const s = field.string();
        return s === null ? null : BigInt(s);
      }
      return next();
    },
  });
  return new MysqlDriver(pool, begin);
}

function tlsFiles(u: URL): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const read = (k: string) => {
    const file = u.searchParams.get(k);
    return file === null ? undefined : readFileSync(file);
  };
  return { ca: read("ssl-ca"), cert: read("ssl-cert"), key: read("ssl-key") };
}

export class MysqlBackend extends SqlBackend {
  /** `readThreads`: threads for the reads whose cost a client controls (read-pool.ts) */
  /** `profile`: the engine behind the wire, when it is not MySQL or MariaDB */
  static async open(url: string, name: string, poolSize: number, readThreads = READ_THREADS, profile?: EngineProfile): Promise<MysqlBackend> {
    const threads = readThreads > 0 ? new ReadPool(name, { mysql: url }, readThreads) : undefined;
    const driver = openMysqlDriver(url, poolSize, profile?.begin);
    if (!profile) return new MysqlBackend(name, driver, mysqlDialect, threads);
    return new MysqlBackend(name, retrying(driver, profile.retryable), profileDialect(profile), threads);
  }
}
