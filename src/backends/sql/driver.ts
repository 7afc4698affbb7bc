// What the SQL backend needs from a database driver: transactions and parameterised
// statements with `?` placeholders. Integer columns come back as bigint, byte columns
// as Uint8Array, whatever the engine.

export type SqlValue = null | bigint | number | string | Uint8Array;
export type Row = Record<string, SqlValue>;

export interface SqlConn {
  all(sql: string, params?: SqlValue[]): Promise<Row[]>;
  /** runs a statement; resolves to the number of rows it changed */
  run(sql: string, params?: SqlValue[]): Promise<number>;
  /** Runs fn inside a savepoint: if it throws, what it did is rolled back and the error rethrown. */
  savepoint<T>(fn: (c: SqlConn) => Promise<T>): Promise<T>;
}

/** savepoint() for engines where SAVEPOINT statements can follow a failed statement */
export async function plainSavepoint<T>(c: SqlConn, fn: (c: SqlConn) => Promise<T>): Promise<T> {
  await c.run("SAVEPOINT sp");
  try {
    const result = await fn(c);
    await c.run("RELEASE SAVEPOINT sp");
    return result;
  } catch (err) {
    await c.run("ROLLBACK TO SAVEPOINT sp");
    await c.run("RELEASE SAVEPOINT sp");
    throw err;
  }
}

export interface SqlDriver {
  /** A read-write transaction; rolled back if fn throws. */
  write<T>(fn: (c: SqlConn) => Promise<T>): Promise<T>;
  /** A read-only transaction on one consistent snapshot. */
  read<T>(fn: (c: SqlConn) => Promise<T>): Promise<T>;
  /** Statements outside any transaction (schema changes, VACUUM). */
  exec(sql: string): Promise<void>;
  close(): Promise<void>;
}
