// The SQL schema, versioned. kv_log keeps one row per key per revision (history, for
// reads at older revisions and watch replay); kv keeps the live version of each key so
// latest reads cost what they return, not what the history holds. Keys and values are bytes.

export const SCHEMA_VERSION = 1;

type Dialect = "sqlite";

const BLOB: Record<Dialect, string> = { sqlite: "BLOB" };

/** statements that bring a database from schema version `from` to SCHEMA_VERSION */
export function schemaStatements(from: number, dialect: Dialect): string[] {
  const blob = BLOB[dialect];
  const steps: string[][] = [
    // version 1
    [
      `CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)`,
      `CREATE TABLE kv_log (
         rev INTEGER NOT NULL,
         sub INTEGER NOT NULL,
         key ${blob} NOT NULL,
         create_rev INTEGER NOT NULL,
         prev_rev INTEGER NOT NULL,
         version INTEGER NOT NULL,
         lease INTEGER NOT NULL,
         deleted INTEGER NOT NULL,
         value ${blob} NOT NULL)`,
      `CREATE UNIQUE INDEX kv_log_rev ON kv_log (rev, sub)`,
      `CREATE UNIQUE INDEX kv_log_key_rev ON kv_log (key, rev)`,
      // a second guard against lost updates: two writes can never both follow one version
      `CREATE UNIQUE INDEX kv_log_key_prev ON kv_log (key, prev_rev) WHERE prev_rev != 0`,
      `CREATE TABLE kv (
         key ${blob} PRIMARY KEY,
         create_rev INTEGER NOT NULL,
         mod_rev INTEGER NOT NULL,
         version INTEGER NOT NULL,
         lease INTEGER NOT NULL,
         value ${blob} NOT NULL)`,
      `CREATE INDEX kv_lease ON kv (lease) WHERE lease != 0`,
      `CREATE TABLE leases (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL)`,
    ],
  ];
  return steps.slice(from).flat();
}
