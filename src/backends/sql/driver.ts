// What the SQL backend needs from a database driver: transactions and parameterised
// statements with `?` placeholders. Integer columns come back as bigint, byte columns
// as Uint8Array, whatever the engine.

export type SqlValue = null | bigint | number | string | Uint8Array;
export type Row = Record<string, SqlValue>;

export interface SqlConn {
  all(sql: string, params?: SqlValue[]): Promise<Row[]>;
  /** runs a statement; resolves to the number of rows it changed */
  run(sql: string, params?: SqlValue[]): Promise<number>;
  /**
   * Sends a write whose answer is not needed without waiting for it, so the next
   * statements follow it on the connection (one round trip saved per statement). A
   * failure fails the transaction when it ends; later statements see the write.
   */
  send(sql: string, params?: SqlValue[]): void;
  /** Runs fn inside a savepoint: if it throws, what it did is rolled back and the error rethrown. */
  savepoint<T>(fn: (c: SqlConn) => Promise<T>): Promise<T>;
}

/** Writes sent but not yet answered on one transaction's connection. */
export class Pending {
  private readonly sent: Promise<unknown>[] = [];

  add(p: Promise<unknown>): void {
    p.catch(() => {}); // observed by settle()
    this.sent.push(p);
  }

  /** resolves once every sent write succeeded; rejects with the first failure */
  async settle(): Promise<void> {
    await Promise.all(this.sent.splice(0));
  }
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
  /** One read statement on its own snapshot, outside any transaction (one round trip). */
  query(sql: string, params?: SqlValue[]): Promise<Row[]>;
  /** Statements outside any transaction (schema changes, VACUUM). */
  exec(sql: string): Promise<void>;
  close(): Promise<void>;
}

/** `d` with every call but close made through `around` (retries, fault reports). */
export function eachCallThrough(d: SqlDriver, around: <T>(call: () => Promise<T>) => Promise<T>): SqlDriver {
  return {
    write: (fn) => around(() => d.write(fn)),
    read: (fn) => around(() => d.read(fn)),
    query: (sql, params) => around(() => d.query(sql, params)),
    exec: (sql) => around(() => d.exec(sql)),
    close: () => d.close(),
  };
}
