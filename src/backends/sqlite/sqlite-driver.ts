// A small shim over the runtime's embedded SQLite: bun:sqlite on Bun, node:sqlite on
// Deno (and Node). Integers are read as bigint: revisions and lease IDs are int64.

export type SqlValue = null | bigint | number | string | Uint8Array;
export type Row = Record<string, SqlValue>;

export interface Statement {
  all(...params: SqlValue[]): Row[];
  get(...params: SqlValue[]): Row | undefined;
  run(...params: SqlValue[]): { changes: number };
}

export interface SqliteDatabase {
  exec(sql: string): void;
  prepare(sql: string): Statement;
  close(): void;
}

declare const Bun: unknown;

export async function openSqlite(path: string): Promise<SqliteDatabase> {
  if (typeof Bun !== "undefined") {
    const { Database } = await import("bun:sqlite");
    const db = new Database(path, { create: true, safeIntegers: true, strict: false });
    return {
      exec: (sql) => void db.run(sql),
      prepare(sql) {
        const q = db.prepare(sql);
        return {
          all: (...p) => q.all(...(p as never[])) as Row[],
          get: (...p) => (q.get(...(p as never[])) as Row | null) ?? undefined,
          run: (...p) => ({ changes: Number(q.run(...(p as never[])).changes) }),
        };
      },
      close: () => db.close(),
    };
  }
  const { DatabaseSync } = await import("node:sqlite");
  const db = new DatabaseSync(path);
  return {
    exec: (sql) => db.exec(sql),
    prepare(sql) {
      const q = db.prepare(sql);
      q.setReadBigInts(true);
      return {
        all: (...p) => q.all(...(p as never[])) as Row[],
        get: (...p) => q.get(...(p as never[])) as Row | undefined,
        run: (...p) => ({ changes: Number(q.run(...(p as never[])).changes) }),
      };
    },
    close: () => db.close(),
  };
}
