// MySQL and MariaDB (and wire-compatible engines) on mysql2. Writers serialize on the
// meta revision row (SELECT ... FOR UPDATE, READ COMMITTED); reads run in consistent
// snapshots. MySQL has no notifications: other processes' commits are found by polling.
import mysql from "mysql2/promise";
import type { Dialect } from "./dialect.ts";
import { plainSavepoint, type Row, type SqlConn, type SqlDriver, type SqlValue } from "./driver.ts";
import { SqlBackend } from "./sql-backend.ts";

/** MySQL indexes at most 3072 bytes; keys are indexed together with a revision */
export const MAX_KEY_BYTES = 2048;

const mysqlDialect: Dialect = {
  name: "mysql",
  keyType: `VARBINARY(${MAX_KEY_BYTES})`,
  valueType: "LONGBLOB",
  intType: "BIGINT",
  tableOptions: " ENGINE=InnoDB",
  upsertKv: `INSERT INTO kv (k, create_rev, mod_rev, version, lease, v) VALUES (?, ?, ?, ?, ?, ?)
             ON DUPLICATE KEY UPDATE create_rev = VALUES(create_rev), mod_rev = VALUES(mod_rev),
               version = VALUES(version), lease = VALUES(lease), v = VALUES(v)`,
  async lockRevision(c) {
    await c.all("SELECT num FROM meta WHERE name = 'revision' FOR UPDATE");
  },
  async lockSchema(c) {
    // a named lock outlives the implicit commits MySQL makes around DDL
    await c.all("SELECT GET_LOCK('strata_schema', 60) AS locked");
  },
  async unlockSchema(c) {
    await c.all("SELECT RELEASE_LOCK('strata_schema') AS released");
  },
  async size(c) {
    const [r] = await c.all(
      `SELECT COALESCE(SUM(data_length + index_length + data_free), 0) AS size,
              COALESCE(SUM(data_length + index_length), 0) AS in_use
         FROM information_schema.tables WHERE table_schema = DATABASE()`,
    );
    return { size: r!.size as bigint, inUse: r!.in_use as bigint };
  },
  async defragment(d) {
    await d.exec("OPTIMIZE TABLE kv_log, kv, leases, meta");
  },
  pollMs: 100,
};

/** mysql2 escapes values itself; bigints must stay exact numbers, bytes must be Buffers */
function param(v: SqlValue): unknown {
  if (typeof v === "bigint") return { toSqlString: () => v.toString() };
  if (v instanceof Uint8Array && !Buffer.isBuffer(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return v;
}

function conn(q: mysql.PoolConnection): SqlConn {
  const c: SqlConn = {
    all: async (sql, params = []) => (await q.query(sql, params.map(param)))[0] as Row[],
    run: async (sql, params = []) => ((await q.query(sql, params.map(param)))[0] as mysql.ResultSetHeader).affectedRows,
    savepoint: (fn) => plainSavepoint(c, fn),
  };
  return c;
}

class MysqlDriver implements SqlDriver {
  constructor(private readonly pool: mysql.Pool) {}

  private async transaction<T>(setup: string[], fn: (c: SqlConn) => Promise<T>): Promise<T> {
    const q = await this.pool.getConnection();
    try {
      for (const s of setup) await q.query(s);
      const result = await fn(conn(q));
      await q.query("COMMIT");
      return result;
    } catch (err) {
      await q.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      q.release();
    }
  }

  write<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return this.transaction(["SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "START TRANSACTION"], fn);
  }

  read<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return this.transaction(
      ["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"],
      fn,
    );
  }

  async exec(sql: string): Promise<void> {
    await this.pool.query(sql);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

export class MysqlBackend extends SqlBackend {
  static open(url: string, name: string, poolSize: number): MysqlBackend {
    const u = new URL(url);
    const ssl = u.searchParams.get("ssl") ?? u.searchParams.get("tls");
    const pool = mysql.createPool({
      host: u.hostname,
      port: Number(u.port || 3306),
      user: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
      database: u.pathname.replace(/^\//, ""),
      connectionLimit: poolSize,
      connectTimeout: 5000,
      supportBigNumbers: true,
      bigNumberStrings: true,
      // TLS from the URL: ?ssl=true (verify the server) or ?ssl=skip-verify
      ssl: ssl && ssl !== "false" ? { rejectUnauthorized: ssl !== "skip-verify" } : undefined,
      // integers as exact bigints, whatever their size
      typeCast(field, next) {
        if (field.type === "LONGLONG" || field.type === "NEWDECIMAL") {
          const s = field.string();
          return s === null ? null : BigInt(s);
        }
        return next();
      },
    });
    return new MysqlBackend(name, new MysqlDriver(pool), mysqlDialect);
  }
}
