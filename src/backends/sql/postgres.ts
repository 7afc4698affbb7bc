// PostgreSQL (and wire-compatible engines) on the `postgres` driver. Writers serialize
// on the meta revision row (SELECT ... FOR UPDATE); reads run in REPEATABLE READ
// snapshots; commits are announced with NOTIFY so other strata processes publish
// them to their watchers at once. CockroachDB and YugabyteDB speak the same wire under
// a profile (engine-profiles.ts) that uses neither NOTIFY nor advisory locks.
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import postgres from "postgres";
import { type Dialect, errorParts, UPSERT_ON_CONFLICT } from "./dialect.ts";
import { Pending, type Row, type SqlConn, type SqlDriver, type SqlValue } from "./driver.ts";
import { READ_THREADS, ReadPool } from "./read-pool.ts";
import { type EngineProfile, noDefragment, storedBytes } from "./engine-profiles.ts";
import { retrying } from "./retrying-driver.ts";
import { oneRow } from "./rows.ts";
import { SqlBackend } from "./sql-backend.ts";
import { log } from "../../util/log.ts";

/** the NOTIFY channel strata processes announce commits on */
export const COMMIT_CHANNEL = "strata_commit";
/**
 * How long one connection attempt may take, unless the URL's connect_timeout (libpq's
 * parameter, seconds) says otherwise (a database far away). An attempt that lands while
 * the database is starting up can hang until then, and the writes behind it wait.
 */
const CONNECT_TIMEOUT_S = 1;
/**
 * At start, how long a database whose connection attempts time out (it is there but slow to
 * accept: a loaded machine, a failover) is tried before strata gives up; a refused or
 * failed attempt is reported at once as before.
 */
const START_WAIT_MS = 15_000;
/** the longest pause between connection attempts while the database is away */
const RECONNECT_MAX_S = 0.1;
/** names this process in its notifications: it publishes its own commits without them */
const PROCESS_ID = crypto.randomUUID();

export const postgresDialect: Dialect = {
  name: "postgres",
  keyType: "BYTEA",
  // a B-tree entry holds at most ~2.7 KB (after compression): a longer key that does not
  // compress fails its index insert; one limit, well inside it, that does not depend on
  // the key's content
  maxKeyBytes: 2048,
  valueType: "BYTEA",
  intType: "BIGINT",
  indexTextType: "TEXT",
  packedTextType: "TEXT",
  contains: (hay, needle) => `strpos(${hay}, ${needle}) > 0`,
  insertIgnoring: ["INSERT INTO", " ON CONFLICT DO NOTHING"],
  tableOptions: "",
  keyOnlyTableOptions: "",
  dropIndex: (index) => `DROP INDEX ${index}`,
  countKv: "kv",
  // the key's own index counts it: PostgreSQL keeps rows apart from their indexes
  countKvIndex: [],
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
    const r = oneRow(await c.all(
      `SELECT pg_database_size(current_database()) AS size,
              (SELECT COALESCE(SUM(pg_total_relation_size(oid)), 0)::bigint FROM pg_class
                WHERE relname IN ('kv', 'kv_log', 'leases', 'meta') AND relkind = 'r') AS in_use`,
    ));
    return { size: r.size as bigint, inUse: r.in_use as bigint };
  },
  async defragment(d) {
    for (const t of ["kv_log", "kv", "leases", "meta"]) await d.exec(`VACUUM ${t}`);
  },
  pollMs: 1000,
  // SQLSTATE 53100 disk_full ("could not extend file … No space left on device");
  // XX001 data_corrupted, XX002 index_corrupted
  fault(err) {
    const { code, message } = errorParts(err);
    if (code === "53100" || /could not extend file|No space left on device/.test(message)) return "full";
    if (code === "XX001" || code === "XX002") return "corrupt";
    return undefined;
  },
};

/**
 * bytea as the driver's own, without its copy of every value before encoding it as hex
 * (param() already hands it a Buffer over the value's bytes): a 1 MB value was 1 MB more
 * garbage per statement.
 */
const BYTEA = {
  to: 17,
  from: [17],
  serialize: (x: Buffer) => "\\x" + x.toString("hex"),
  parse: (x: string) => Buffer.from(x.slice(2), "hex"),
};

/**
 * PostgreSQL's dialect for an engine without NOTIFY and advisory locks: writers only lock
 * the meta rows, other processes' commits are found by polling, schema changes go
 * through the lease row.
 */
export function profileDialect(profile: EngineProfile): Dialect {
  return {
    ...postgresDialect,
    lockMeta: (c) => c.all("SELECT name, num FROM meta FOR UPDATE"),
    lockSchema: undefined,
    schemaLease: true,
    pollMs: profile.pollMs,
    size: (c) => storedBytes(c),
    defragment: noDefragment,
  };
}

/** how transactions begin (BEGIN's options); an engine profile's own otherwise */
const BEGIN = { write: [], read: ["ISOLATION LEVEL REPEATABLE READ READ ONLY"] };

/** `?` placeholders → `$1, $2, …` (strata's SQL has no `?` inside literals) */
function numbered(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}

function param(v: SqlValue): unknown {
  return v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v;
}

function conn(q: postgres.TransactionSql, pending: Pending): SqlConn {
  const query = (sql: string, params: SqlValue[]) => q.unsafe(numbered(sql), params.map(param) as never[], { prepare: true });
  return {
    all: async (sql, params = []) => (await query(sql, params)) as unknown as Row[],
    run: async (sql, params = []) => (await query(sql, params)).count,
    // postgres pipelines a query issued before the previous one was answered
    send: (sql, params = []) => pending.add(query(sql, params)),
    // the driver's own savepoints: it fails the whole transaction on any error outside one
    savepoint: (fn) => q.savepoint((sq) => fn(conn(sq, pending))) as Promise<never>,
  };
}

class PostgresDriver implements SqlDriver {
  constructor(readonly sql: postgres.Sql, private readonly begin: EngineProfile["begin"] = BEGIN) {}

  /**
   * A transaction as the driver runs it (it also ends one whose connection dropped).
   * Every write sent without waiting is answered before it commits: a failed write aborts
   * the transaction, and COMMIT would then roll back without an error.
   */
  private transaction<T>(options: string, fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return this.sql.begin(options, async (tx) => {
      const pending = new Pending();
      const result = await fn(conn(tx, pending));
      await pending.settle();
      return result;
    }) as Promise<T>;
  }

  write<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return this.transaction(this.begin.write.join(" "), fn);
  }

  read<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return this.transaction(this.begin.read.join(" "), fn);
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

/** A pool of `poolSize` connections to the database at `url`. */
export function openPostgresDriver(url: string, poolSize: number, begin?: EngineProfile["begin"]): PostgresDriver {
  const { plain, ssl } = tlsFiles(url);
  return new PostgresDriver(postgres(plain, {
    ...(ssl && { ssl }),
    max: poolSize,
    types: { bigint: postgres.BigInt, bytea: BYTEA },
    onnotice: () => {},
    connection: { application_name: "strata" },
    // fail requests quickly while the database is away instead of queueing forever
    connect_timeout: Number(new URL(url).searchParams.get("connect_timeout")) || CONNECT_TIMEOUT_S,
    // The driver's default waits 3^n/100 s (up to 20 s) before the pool's next
    // connection attempt after n failures: requests queued meanwhile were held that
    // long, and strata came back seconds after the database did. A refused attempt
    // costs the database nothing, so retry soon.
    backoff: (retries: number) => Math.min(0.025 * 2 ** retries, RECONNECT_MAX_S),
  }), begin);
}

/**
 * libpq's sslrootcert=, sslcert= and sslkey= files (which postgres.js would otherwise send
 * the server as settings): read here into the TLS options, with sslmode=require
 * (encrypted, unverified), verify-ca (no host name check) or verify-full (the default).
 */
function tlsFiles(url: string): { plain: string; ssl?: ConnectionOptions } {
  const u = new URL(url);
  const [ca, cert, key] = ["sslrootcert", "sslcert", "sslkey"].map((k) => u.searchParams.get(k) ?? undefined);
  if ((ca === undefined || ca === "system") && cert === undefined && key === undefined) return { plain: url };
  const mode = u.searchParams.get("sslmode") ?? "verify-full";
  for (const k of ["sslrootcert", "sslcert", "sslkey", "sslmode"]) u.searchParams.delete(k);
  const read = (f: string | undefined) => (f === undefined || f === "system" ? undefined : readFileSync(f));
  return {
    plain: u.toString(),
    ssl: {
      ca: read(ca),
      cert: read(cert),
      key: read(key),
      rejectUnauthorized: mode === "verify-ca" || mode === "verify-full",
      ...(mode === "verify-ca" && { checkServerIdentity: () => undefined }),
    },
  };
}

export class PostgresBackend extends SqlBackend {
  /**
   * `readThreads`: threads for the reads whose cost a client controls (read-pool.ts);
   * `profile`: the engine behind the wire, when it is not PostgreSQL
   */
  static async open(url: string, name: string, poolSize: number, readThreads = READ_THREADS, profile?: EngineProfile): Promise<PostgresBackend> {
    const threads = readThreads > 0 ? new ReadPool(name, { postgres: url }, readThreads) : undefined;
    const pg = openPostgresDriver(url, poolSize, profile?.begin);
    await firstContact(pg, name);
    if (!profile) return new PostgresBackend(name, pg, pg, postgresDialect, threads, true);
    return new PostgresBackend(name, pg, retrying(pg, profile.retryable), profileDialect(profile), threads, false);
  }

  private constructor(
    name: string,
    private readonly pg: PostgresDriver,
    driver: SqlDriver,
    dialect: Dialect,
    threads: ReadPool | undefined,
    /** whether commits are announced with NOTIFY (an engine profile polls alone) */
    private readonly listens: boolean,
  ) {
    super(name, driver, dialect, threads);
  }

  override onExternalCommit(notify: () => void): () => void {
    const stopPoll = super.onExternalCommit(notify);
    if (!this.listens) return stopPoll;
    const sql = this.pg.sql;
    let unlisten: (() => Promise<void>) | undefined;
    sql.listen(COMMIT_CHANNEL, (from) => from !== PROCESS_ID && notify(), () => notify()).then(
      (l) => (unlisten = l.unlisten),
      () => {}, // the poll keeps watchers current until LISTEN works again
    );
    return () => {
      stopPoll();
      // the pool may be ending (stop, then close): a failed UNLISTEN then is no error
      void unlisten?.().catch(() => {});
    };
  }
}

/**
 * Waits out connection attempts that time out, up to START_WAIT_MS; any other outcome is
 * left to opening, which reports it. One attempt may take CONNECT_TIMEOUT_S (kept short so
 * that requests fail fast during an outage), and a start beside a busy database server took
 * longer than that once.
 */
async function firstContact(pg: PostgresDriver, name: string): Promise<void> {
  const deadline = performance.now() + START_WAIT_MS;
  for (;;) {
    try {
      await pg.query("SELECT 1");
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== "CONNECT_TIMEOUT" || performance.now() >= deadline) return;
      log("warn", "the database did not accept a connection in time; trying again", { backend: name });
    }
  }
}
