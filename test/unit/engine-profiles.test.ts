// The engine profiles as chosen by URL: the wire URL they pass on, strata's own poll
// parameter taken out (and refused when it is no number of milliseconds), and which
// errors each profile retries. Against simulated engines: test/integration/engine-profiles.test.ts.
import { describe, expect, test } from "bun:test";
import { DEFAULT_POLL_MS, engineOf } from "../../src/backends/sql/engine-profiles.ts";
import { idempotent } from "../../src/backends/sql/schema-lease.ts";
import { mysqlDialect } from "../../src/backends/sql/mysql.ts";
import { postgresDialect } from "../../src/backends/sql/postgres.ts";

describe("engineOf", () => {
  test("cockroachdb:// and yugabytedb:// are PostgreSQL URLs, tidb:// a MySQL one", () => {
    const c = engineOf("cockroachdb://root@db.example:26257/strata?sslmode=require")!;
    expect([c.profile.engine, c.profile.wire, c.wireUrl]).toEqual(["cockroachdb", "postgres", "postgres://root@db.example:26257/strata?sslmode=require"]);
    expect(engineOf("yugabytedb://yugabyte@h:5433/db")!.wireUrl).toBe("postgres://yugabyte@h:5433/db");
    const t = engineOf("tidb://u:p%40ss@h:4000/db")!;
    expect([t.profile.wire, t.wireUrl]).toEqual(["mysql", "mysql://u:p%40ss@h:4000/db"]);
    expect(c.profile.pollMs).toBe(DEFAULT_POLL_MS);
    expect(engineOf("postgres://h/db")).toBeUndefined();
  });

  test("poll_interval_ms sets the poll and does not reach the driver", () => {
    const e = engineOf("tidb://u@h:4000/db?poll_interval_ms=20&ssl=true")!;
    expect(e.profile.pollMs).toBe(20);
    expect(e.wireUrl).toBe("mysql://u@h:4000/db?ssl=true");
  });

  test("a poll that is no whole number of milliseconds in range is refused, naming the parameter", () => {
    for (const bad of ["abc", "0", "2.5", "-1", "99999999", ""]) {
      expect(() => engineOf(`cockroachdb://h/db?poll_interval_ms=${bad}`)).toThrow(/cockroachdb:\/\/ URL: poll_interval_ms must be a whole number of milliseconds/);
    }
  });

  test("each profile retries its engine's conflicts and nothing else", () => {
    const pg = engineOf("cockroachdb://h/db")!.profile;
    expect(pg.retryable({ code: "40001" })).toBe(true);
    expect(pg.retryable({ code: "40P01" })).toBe(true);
    // "result is ambiguous": the commit token decides, not a retry
    expect(pg.retryable({ code: "40003" })).toBe(false);
    expect(pg.retryable({ code: "23505" })).toBe(false);
    expect(pg.retryable(new Error("connection refused"))).toBe(false);
    const tidb = engineOf("tidb://h/db")!.profile;
    for (const errno of [9007, 8002, 8022, 1213, 8028, 1412]) expect(tidb.retryable({ errno })).toBe(true);
    for (const errno of [1062, 1205, 8004]) expect(tidb.retryable({ errno })).toBe(false);
  });
});

describe("idempotent schema statements", () => {
  test("tables and indexes IF NOT EXISTS, rows inserted skipping those there", () => {
    expect(idempotent("CREATE TABLE meta (name VARCHAR(64))", postgresDialect)).toBe("CREATE TABLE IF NOT EXISTS meta (name VARCHAR(64))");
    expect(idempotent("CREATE UNIQUE INDEX kv_log_key_rev ON kv_log (k, rev)", mysqlDialect)).toBe("CREATE UNIQUE INDEX IF NOT EXISTS kv_log_key_rev ON kv_log (k, rev)");
    expect(idempotent("CREATE INDEX kv_lease ON kv (lease)", postgresDialect)).toBe("CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease)");
    expect(idempotent("DROP INDEX kv_log_key_prev ON kv_log", mysqlDialect)).toBe("DROP INDEX IF EXISTS kv_log_key_prev ON kv_log");
    expect(idempotent("INSERT INTO meta (name, num) SELECT 'x', 1", postgresDialect)).toBe("INSERT INTO meta (name, num) SELECT 'x', 1 ON CONFLICT DO NOTHING");
    expect(idempotent("INSERT INTO meta (name, num) SELECT 'x', 1", mysqlDialect)).toBe("INSERT IGNORE INTO meta (name, num) SELECT 'x', 1");
  });
});
