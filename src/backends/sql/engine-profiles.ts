// The distributed SQL engines strata speaks to over another engine's wire: CockroachDB
// and YugabyteDB over PostgreSQL's, TiDB over MySQL's. A profile uses only what its
// engine documents (docs/distributed-sql.md): no LISTEN/NOTIFY (other processes' commits
// are found by polling the revision), no advisory or named locks (schema changes are
// serialized through a lease row, schema-lease.ts), isolation levels the engine has, and
// every transaction retried on the engine's serialization and write-conflict errors
// (retrying-driver.ts).
import { errorParts } from "./dialect.ts";
import type { SqlConn } from "./driver.ts";
import { oneRow } from "./rows.ts";

export type Engine = "cockroachdb" | "yugabytedb" | "tidb";

export interface EngineProfile {
  readonly engine: Engine;
  /** the wire protocol, and the scheme the rest of the URL is read with */
  readonly wire: "postgres" | "mysql";
  /**
   * how transactions begin: for the PostgreSQL wire BEGIN's options, for the MySQL wire
   * the statements sent before the transaction's first one
   */
  readonly begin: { write: string[]; read: string[] };
  /** an error after which the whole transaction was rolled back and may run again */
  retryable(err: unknown): boolean;
  /** how often every process reads the revision to find other processes' commits (ms) */
  readonly pollMs: number;
}

/**
 * The default revision poll: a watcher on another process sees a commit within this
 * (plus one read of the meta rows). One small primary-key read per process per poll.
 */
export const DEFAULT_POLL_MS = 50;
/** the URL parameter that sets the poll (milliseconds); it is strata's, not the driver's */
export const POLL_PARAMETER = "poll_interval_ms";
const MIN_POLL_MS = 5;
const MAX_POLL_MS = 10_000;

/**
 * SQLSTATE 40001 serialization_failure: CockroachDB's "restart transaction" errors and
 * YugabyteDB's conflicts; 40P01 deadlock_detected (YugabyteDB's deadlock detection).
 * Both roll the whole transaction back. 40003 (CockroachDB's "result is ambiguous") is
 * not among them: the transaction may have committed, and the commit token decides.
 */
const PG_RETRYABLE = new Set(["40001", "40P01"]);
/**
 * TiDB: 9007 write conflict (optimistic commit), 8002 SELECT FOR UPDATE write conflict,
 * 8022 commit failed and rolled back, 1213 deadlock (pessimistic mode, as InnoDB's),
 * 8028 "information schema is changed" (a table another process was creating meanwhile);
 * each is documented as safe to retry the whole transaction. 1412 is MySQL's and MariaDB's
 * "table definition has changed, please retry transaction": a snapshot taken before another
 * process created a table (three processes starting on one empty database met it).
 */
const TIDB_RETRYABLE = new Set([9007, 8002, 8022, 1213, 8028, 1412]);

const pgRetryable = (err: unknown) => PG_RETRYABLE.has(errorParts(err).code);

const PROFILES: Record<Engine, Omit<EngineProfile, "pollMs">> = {
  // SERIALIZABLE is CockroachDB's default and the level it always has (READ COMMITTED
  // needs a cluster setting); conflicts come back as 40001 for the client to retry
  cockroachdb: {
    engine: "cockroachdb",
    wire: "postgres",
    begin: { write: ["ISOLATION LEVEL SERIALIZABLE"], read: ["ISOLATION LEVEL SERIALIZABLE READ ONLY"] },
    retryable: pgRetryable,
  },
  // REPEATABLE READ is YugabyteDB's Snapshot isolation, there without any flag (its READ
  // COMMITTED needs yb_enable_read_committed_isolation, else it runs as Snapshot)
  yugabytedb: {
    engine: "yugabytedb",
    wire: "postgres",
    begin: { write: ["ISOLATION LEVEL REPEATABLE READ"], read: ["ISOLATION LEVEL REPEATABLE READ READ ONLY"] },
    retryable: pgRetryable,
  },
  // READ COMMITTED in a pessimistic transaction: the meta row locked FOR UPDATE, then every
  // statement reads the newest commits (TiDB has READ COMMITTED in pessimistic mode only;
  // the comment form of PESSIMISTIC is TiDB's, other MySQL servers read a comment).
  // Reads: a snapshot (REPEATABLE READ is TiDB's snapshot isolation).
  tidb: {
    engine: "tidb",
    wire: "mysql",
    begin: {
      write: ["SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "BEGIN /*T! PESSIMISTIC */"],
      read: ["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"],
    },
    retryable: (err) => TIDB_RETRYABLE.has(errorParts(err).errno),
  },
};

export const ENGINE_SCHEMES = ["cockroachdb", "yugabytedb", "tidb"] as const;

/**
 * The profile a backend URL names (cockroachdb://, yugabytedb://, tidb://) and the URL in
 * its wire's scheme, without strata's own parameter; undefined for any other URL.
 */
export function engineOf(url: string): { profile: EngineProfile; wireUrl: string } | undefined {
  const engine = ENGINE_SCHEMES.find((s) => url.startsWith(`${s}://`));
  if (!engine) return undefined;
  const base = PROFILES[engine];
  const u = new URL(`${base.wire}://${url.slice(engine.length + 3)}`);
  const given = u.searchParams.get(POLL_PARAMETER);
  let pollMs = DEFAULT_POLL_MS;
  if (given !== null) {
    pollMs = Number(given);
    if (!Number.isInteger(pollMs) || pollMs < MIN_POLL_MS || pollMs > MAX_POLL_MS) {
      throw new Error(`${engine}:// URL: ${POLL_PARAMETER} must be a whole number of milliseconds from ${MIN_POLL_MS} to ${MAX_POLL_MS}, not ${JSON.stringify(given)}`);
    }
    u.searchParams.delete(POLL_PARAMETER);
  }
  return { profile: { ...base, pollMs }, wireUrl: u.toString() };
}

/**
 * The bytes of keys and values stored, history and live copies: the size of the data, not
 * of the files (CockroachDB had no pg_database_size until 2026, YugabyteDB answers 0 for
 * PostgreSQL's size functions, TiDB's information_schema holds estimates from statistics).
 * Reads every row: asked for by status and the space quota.
 */
export async function storedBytes(c: SqlConn): Promise<{ size: bigint; inUse: bigint }> {
  const r = oneRow(await c.all(
    `SELECT (SELECT COALESCE(SUM(OCTET_LENGTH(k) + OCTET_LENGTH(v)), 0) FROM kv_log)
          + (SELECT COALESCE(SUM(OCTET_LENGTH(k) + OCTET_LENGTH(v)), 0) FROM kv) AS n`,
  ));
  const n = BigInt(r.n as bigint);
  return { size: n, inUse: n };
}

/** The engines compact their storage themselves (CockroachDB has no VACUUM, YugabyteDB ignores it, TiKV compacts on its own). */
export async function noDefragment(): Promise<void> {}
