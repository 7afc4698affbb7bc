// The live keys of a strata SQLite file, read with SQL: where the routing put them.
import { Database } from "bun:sqlite";

/** the keys of the `kv` table of the SQLite file at `path`, in the table's order */
export function keysInSqlite(path: string): string[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.query("SELECT k FROM kv").all() as Array<{ k: Uint8Array }>).map((r) => Buffer.from(r.k).toString());
  } finally {
    db.close();
  }
}
