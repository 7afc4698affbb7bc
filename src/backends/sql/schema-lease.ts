// Schema changes serialized through a row, for engines without advisory or named locks
// (CockroachDB, YugabyteDB, TiDB): a process creating or migrating the schema first
// inserts the one row of schema_lease naming itself, with an expiry; the others wait
// until it is gone (or expired: its holder died) and then find the schema done. DDL runs
// outside transactions there (TiDB commits around it, YugabyteDB's DDL is not
// transactional by default), so every statement is made safe to run twice: a migration
// cut off half way is finished by the next holder.
import type { Dialect } from "./dialect.ts";
import type { SqlDriver } from "./driver.ts";

/** how long a lease holds without its holder; far longer than creating a schema takes */
const LEASE_MS = 30_000;
/** how often a waiting process looks at the lease */
const WAIT_STEP_MS = 100;

/** Runs fn holding the schema lease; waits for another holder to finish, or its lease to expire. */
export async function withSchemaLease<T>(driver: SqlDriver, d: Dialect, name: string, fn: () => Promise<T>): Promise<T> {
  await createLeaseTable(driver, d);
  const holder = crypto.randomUUID();
  const deadline = Date.now() + 2 * LEASE_MS;
  const [start, end] = d.insertIgnoring;
  for (;;) {
    const now = Date.now();
    const took = await driver.write(async (c) =>
      (await c.run(`${start} schema_lease (id, holder, expires_at) VALUES (1, ?, ?)${end}`, [holder, BigInt(now + LEASE_MS)])) === 1 ||
      (await c.run("UPDATE schema_lease SET holder = ?, expires_at = ? WHERE id = 1 AND expires_at < ?", [holder, BigInt(now + LEASE_MS), BigInt(now)])) === 1
    );
    if (took) break;
    if (Date.now() > deadline) throw new Error(`${name}: another strata process has held the schema lease (table schema_lease) for over ${LEASE_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, WAIT_STEP_MS));
  }
  try {
    return await fn();
  } finally {
    await driver.write((c) => c.run("DELETE FROM schema_lease WHERE id = 1 AND holder = ?", [holder]));
  }
}

async function createLeaseTable(driver: SqlDriver, d: Dialect): Promise<void> {
  const create = `CREATE TABLE IF NOT EXISTS schema_lease (id ${d.intType} NOT NULL PRIMARY KEY, holder VARCHAR(64) NOT NULL, expires_at ${d.intType} NOT NULL)${d.tableOptions}`;
  try {
    await driver.exec(create);
  } catch {
    // PostgreSQL's catalog can refuse two IF NOT EXISTS creations racing (a duplicate
    // type name); the other one made the table
    await driver.exec(create);
  }
}

/**
 * A schema statement that does nothing when it already took effect: tables and indexes
 * IF NOT EXISTS, indexes dropped IF EXISTS, rows inserted skipping those there.
 */
export function idempotent(statement: string, d: Dialect): string {
  const [start, end] = d.insertIgnoring;
  return statement
    .replace(/^CREATE TABLE /, "CREATE TABLE IF NOT EXISTS ")
    .replace(/^CREATE (UNIQUE )?INDEX /, "CREATE $1INDEX IF NOT EXISTS ")
    .replace(/^DROP INDEX /, "DROP INDEX IF EXISTS ")
    .replace(/^INSERT INTO (.*)$/s, `${start} $1${end}`);
}
