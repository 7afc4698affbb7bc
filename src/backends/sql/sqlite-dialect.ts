// SQLite's differences from the other SQL engines (see dialect.ts).
import { type Dialect, errorParts, UPSERT_ON_CONFLICT } from "./dialect.ts";

export const sqliteDialect: Dialect = {
  name: "sqlite",
  keyType: "BLOB",
  valueType: "BLOB",
  intType: "INTEGER",
  indexTextType: "TEXT",
  packedTextType: "TEXT",
  contains: (hay, needle) => `instr(${hay}, ${needle}) > 0`,
  insertIgnoring: ["INSERT OR IGNORE INTO", ""],
  tableOptions: "",
  countKv: "kv",
  upsertKv: UPSERT_ON_CONFLICT,
  // BEGIN IMMEDIATE already made this connection the only writer
  lockMeta: (c) => c.all("SELECT name, num FROM meta"),
  // the file is locked to this process: nobody else migrates or writes
  lockSchema: async () => {},
  pollMs: 0,
  async size(c) {
    const one = async (pragma: string) => (await c.all(`PRAGMA ${pragma}`))[0]![pragma] as bigint;
    const page = await one("page_size");
    const count = await one("page_count");
    const free = await one("freelist_count");
    return { size: page * count, inUse: page * (count - free) };
  },
  async defragment(d) {
    await d.exec("VACUUM");
    await d.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  },
  // by message as well as code: node:sqlite has no per-error code, and a failed
  // transaction's error is rethrown wrapped (its message kept)
  fault(err) {
    const { code, message } = errorParts(err);
    if (code.startsWith("SQLITE_FULL") || /database or disk is full/.test(message)) return "full";
    if (code.startsWith("SQLITE_CORRUPT") || code.startsWith("SQLITE_NOTADB") || /database disk image is malformed|file is not a database/.test(message)) return "corrupt";
    return undefined;
  },
};
