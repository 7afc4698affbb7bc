// One SQLite connection seen as an SqlConn (statements cached per connection), and its
// transactions: shared by the event loop's connections and the read threads'.
import { plainSavepoint, type SqlConn, type SqlValue } from "../sql/driver.ts";
import type { SqliteDatabase } from "./sqlite-driver.ts";

export function sqliteConn(db: SqliteDatabase): SqlConn {
  const cache = new Map<string, ReturnType<SqliteDatabase["prepare"]>>();
  const stmt = (sql: string) => {
    let s = cache.get(sql);
    if (!s) cache.set(sql, (s = db.prepare(sql)));
    return s;
  };
  const c: SqlConn = {
    all: async (sql: string, params: SqlValue[] = []) => stmt(sql).all(...params),
    run: async (sql: string, params: SqlValue[] = []) => stmt(sql).run(...params).changes,
    // in process: nothing to save by not waiting
    send: (sql: string, params: SqlValue[] = []) => void stmt(sql).run(...params),
    savepoint: (fn) => plainSavepoint(c, fn),
  };
  return c;
}

export async function sqliteTransaction<T>(db: SqliteDatabase, begin: string, fn: () => Promise<T>): Promise<T> {
  db.exec(begin);
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    db.exec("ROLLBACK");
    throw err;
  }
  db.exec("COMMIT");
  return result;
}
