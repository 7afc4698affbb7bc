// PostgreSQL (and wire-compatible engines) on the `postgres` driver. Writers serialize
// on the meta revision row (SELECT ... FOR UPDATE); reads run in REPEATABLE READ
// snapshots; commits are announced with NOTIFY so other strata processes publish
// them to their watchers at once.
import postgres from "postgres";
import { type Dialect, UPSERT_ON_CONFLICT } from "./dialect.ts";
import { Pending, plainSavepoint, type Row, type SqlConn, type SqlDriver, type SqlValue } from "./driver.ts";
import { SqlBackend } from "./sql-backend.ts";

/** the NOTIFY channel strata processes announce commits on */
export const COMMIT_CHANNEL = "strata_commit";
/** names this process in its notifications: it publishes its own commits without them */
const PROCESS_ID = crypto.randomUUID();

const postgresDialect: Dialect = {
  name: "postgres",
  keyType: "BYTEA",
  valueType: "BYTEA",
  intType: "BIGINT",
  tableOptions: "",
  countKv: "kv",
  upsertKv: UPSERT_ON_CONFLICT,
  async lockMeta(c) {
    // delivered to listeners when (and only if) this transaction commits
    c.send(`NOTIFY ${COMMIT_CHANNEL}, '${PROCESS_ID}'`);
    return c.all("SELECT name, num FROM meta FOR UPDATE");
  },
  async lockSchema(c) {
    await c.all("SELECT pg_advisory_xact_lock(7262897)");
  },
  async size(c) {
    const [r] = await c.all(
      `SELECT pg_database_size(current_database()) AS size,
              (SELECT COALESCE(SUM(pg_total_relation_size(oid)), 0)::bigint FROM pg_class
                WHERE relname IN ('kv', 'kv_log', 'leases', 'meta') AND relkind = 'r') AS in_use`,
    );
    return { size: r!.size as bigint, inUse: r!.in_use as bigint };
  },
  async defragment(d) {
    for (const t of ["kv_log", "kv", "leases", "meta"]) await d.exec(`VACUUM ${t}`);
  },
  pollMs: 1000,
};

/** `?` placeholders → `$1, $2, …` (strata's SQL has no `?` inside literals) */
function numbered(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}

function param(v: SqlValue): unknown {
  return v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v;
}

function conn(q: postgres.ReservedSql, pending: Pending): SqlConn {
  const query = (sql: string, params: SqlValue[]) => q.unsafe(numbered(sql), params.map(param) as never[], { prepare: true });
  const c: SqlConn = {
    all: async (sql, params = []) => (await query(sql, params)) as unknown as Row[],
    run: async (sql, params = []) => (await query(sql, params)).count,
    // postgres pipelines a query issued before the previous one was answered
    send: (sql, params = []) => pending.add(query(sql, params)),
    savepoint: (fn) => plainSavepoint(c, fn),
  };
  return c;
}

class PostgresDriver implements SqlDriver {
  constructor(readonly sql: postgres.Sql) {}

  /**
   * A transaction on a connection of its own, BEGIN sent ahead of the first statement and
   * COMMIT right behind the last writes, neither waited for on its own. A failed
   * statement aborts the transaction and COMMIT then rolls back without an error, so its
   * answer is checked.
   */
  private async transaction<T>(begin: string, fn: (c: SqlConn) => Promise<T>): Promise<T> {
    const q = await this.sql.reserve();
    const pending = new Pending();
    try {
      pending.add(q.unsafe(begin));
      const result = await fn(conn(q, pending));
      const commit = q.unsafe("COMMIT");
      pending.add(commit);
      await pending.settle();
      const done = await commit;
      if (done.command !== "COMMIT") throw new Error(`the transaction was rolled back (${done.command})`);
      return result;
    } catch (err) {
      await q.unsafe("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      q.release();
    }
  }

  write<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return this.transaction("BEGIN", fn);
  }

  read<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return this.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", fn);
  }

  async query(sql: string, params: SqlValue[] = []): Promise<Row[]> {
    return (await this.sql.unsafe(numbered(sql), params.map(param) as never[], { prepare: true })) as unknown as Row[];
  }

  async exec(sql: string): Promise<void> {
    await this.sql.unsafe(sql);
  }

  async close(): Promise<void> {
    await this.sql.end({ timeout: 5 });
  }
}

export class PostgresBackend extends SqlBackend {
  static open(url: string, name: string, poolSize: number): PostgresBackend {
    const sql = postgres(url, {
      max: poolSize,
      types: { bigint: postgres.BigInt },
      onnotice: () => {},
      connection: { application_name: "strata" },
      // fail requests quickly while the database is away instead of queueing forever
      connect_timeout: 5,
    });
    return new PostgresBackend(name, new PostgresDriver(sql), postgresDialect);
  }

  override onExternalCommit(notify: () => void): () => void {
    const stopPoll = super.onExternalCommit(notify);
    const sql = (this.driver as PostgresDriver).sql;
    let unlisten: (() => Promise<void>) | undefined;
    sql.listen(COMMIT_CHANNEL, (from) => from !== PROCESS_ID && notify(), () => notify()).then(
      (l) => (unlisten = l.unlisten),
      () => {}, // the poll keeps watchers current until LISTEN works again
    );
    return () => {
      stopPoll();
      void unlisten?.();
    };
  }
}
