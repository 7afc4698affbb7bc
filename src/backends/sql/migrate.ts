// Bringing a database to this strata's schema version (schema.ts holds the statements):
// under the dialect's schema lock, or under the lease row for engines without one
// (schema-lease.ts). Another strata process may be migrating at the same moment.
import { log } from "../../util/log.ts";
import type { SqlConn } from "./driver.ts";
import { randomId } from "./rows.ts";
import { SCHEMA_VERSION, schemaStatements } from "./schema.ts";
import { idempotent, withSchemaLease } from "./schema-lease.ts";
import type { SqlDb } from "./sql-db.ts";

/** Migrates the database to SCHEMA_VERSION; refuses one newer than this strata. */
export async function migrateSchema(db: SqlDb): Promise<void> {
  const version = await db.driver.read((c) => schemaVersion(c, db.name));
  if (version > SCHEMA_VERSION) {
    throw new Error(`${db.name}: database schema version ${version} is newer than this strata's (${SCHEMA_VERSION}); upgrade strata`);
  }
  if (version < SCHEMA_VERSION) await migrate(db, version);
}

async function migrate(db: SqlDb, from: number): Promise<void> {
  const { dialect } = db;
  if (dialect.schemaLease) return migrateUnderLease(db);
  let migrated = false;
  await db.driver.write(async (c) => {
    // another strata process may be migrating at the same moment: the first one wins
    await dialect.lockSchema?.(c);
    if ((await schemaVersion(c, db.name)) !== from) return void (await dialect.unlockSchema?.(c));
    for (const stmt of schemaStatements(from, dialect)) await c.run(stmt);
    await recordSchema(c, from, "INSERT INTO");
    await dialect.unlockSchema?.(c);
    migrated = true;
  });
  if (migrated) logMigrated(db, from);
}

/** one line from the process that upgraded a database (not for a new one), so an operator sees which did */
function logMigrated(db: SqlDb, from: number): void {
  if (from > 0) log("info", "database schema upgraded", { backend: db.name, from, to: SCHEMA_VERSION });
}

/** The schema made under the lease row (schema-lease.ts): each statement on its own, safe to run twice. */
function migrateUnderLease(db: SqlDb): Promise<void> {
  const { driver, dialect } = db;
  return withSchemaLease(driver, dialect, db.name, async () => {
    const from = await driver.read((c) => schemaVersion(c, db.name));
    if (from >= SCHEMA_VERSION) return;
    for (const stmt of schemaStatements(from, dialect)) await driver.exec(idempotent(stmt, dialect));
    await driver.write((c) => recordSchema(c, from, dialect.insertIgnoring[0], dialect.insertIgnoring[1]));
    logMigrated(db, from);
  });
}

async function schemaVersion(c: SqlConn, name: string): Promise<number> {
  // in a savepoint, so the transaction stays usable when the table does not exist yet
  try {
    const rows = await c.savepoint((sc) => sc.all("SELECT num FROM meta WHERE name = 'schema_version'"));
    return rows[0] ? Number(rows[0].num) : 0;
  } catch (err) {
    if (isMissingTable(err)) return 0;
    // a table there that this role may not read: creating the schema would only say "already exists"
    if (isPermissionDenied(err)) {
      const role = await c.savepoint((sc) => sc.all("SELECT current_user AS role")).then((r) => String(r[0]?.role), () => "strata connects as");
      throw new Error(
        `${name}: permission denied: the database role ${role} lacks rights on table meta, which holds strata's schema ` +
          `(${(err as Error).message}); grant it SELECT, INSERT, UPDATE and DELETE on strata's tables, or connect as their owner`,
      );
    }
    throw err;
  }
}

/** The meta rows of a new database (`insert`: how they are inserted), and the schema's version. */
async function recordSchema(c: SqlConn, from: number, insert: string, insertEnd = ""): Promise<void> {
  if (from === 0) {
    for (const [name, num] of [["revision", 1n], ["compact_revision", 0n], ["cluster_id", randomId()], ["member_id", randomId()], ["schema_version", 0n]] as const) {
      await c.run(`${insert} meta (name, num) VALUES (?, ?)${insertEnd}`, [name, num]);
    }
  }
  await c.run("UPDATE meta SET num = ? WHERE name = 'schema_version'", [BigInt(SCHEMA_VERSION)]);
}

/** PostgreSQL's undefined_table, MySQL's ER_NO_SUCH_TABLE, SQLite's "no such table" */
function isMissingTable(err: unknown): boolean {
  const e = err as { code?: unknown; errno?: unknown; message?: unknown };
  return e.code === "42P01" || e.errno === 1146 || /no such table/i.test(String(e.message));
}

/** PostgreSQL's insufficient_privilege, MySQL's table access denied */
function isPermissionDenied(err: unknown): boolean {
  const e = err as { code?: unknown; errno?: unknown; message?: unknown };
  return e.code === "42501" || e.errno === 1142 || /permission denied|command denied/i.test(String(e.message));
}
