// SQLite's differences from the other SQL engines (see dialect.ts).
import { type Dialect, errorParts, UPSERT_ON_CONFLICT, UPSERT_VALUES_ON_CONFLICT } from "../sql/dialect.ts";
import { oneRow } from "../sql/rows.ts";

/** the size an empty etcd 3.4 reports (its bbolt file: meta, freelist and bucket pages) */
const ETCD_EMPTY_DB_BYTES = 20_480n;

export const sqliteDialect: Dialect = {
  name: "sqlite",
  keyType: "BLOB",
  valueType: "BLOB",
  intType: "INTEGER",
  indexTextType: "TEXT",
  packedTextType: "TEXT",
  contains: (hay, needle) => `instr(${hay}, ${needle}) > 0`,
  insertIgnoring: ["INSERT OR IGNORE INTO", ""],
  // a commit wrote a page per label value it touched (the file is this process's alone)
  labelRowsLater: true,
  tableOptions: "",
  keyOnlyTableOptions: " WITHOUT ROWID",
  dropIndex: (index) => `DROP INDEX ${index}`,
  countKv: "kv",
  countKvIndex: [],
  upsertKv: UPSERT_ON_CONFLICT,
  // in process: the value is not sent anywhere, and reading the log row back cost a lookup per put
  upsertKvValues: UPSERT_VALUES_ON_CONFLICT,
  // BEGIN IMMEDIATE already made this connection the only writer
  lockMeta: (c) => c.all("SELECT name, num FROM meta"),
  // the file is locked to this process: nobody else migrates or writes
  lockSchema: async () => {},
  pollMs: 0,
  // The file's pages, less the first page of every table and index (sqlite_master's own
  // page 1 among them), which an empty database already holds, and plus what etcd's empty
  // bbolt file takes: an empty strata reports what an empty etcd does, and what is stored
  // on top counts as SQLite stores it, so a --quota-backend-bytes chosen for etcd holds
  // about the same data here (an empty SQLite file is 15 pages, etcd's 5).
  async size(c) {
    const one = async (sql: string) => BigInt(Object.values(oneRow(await c.all(sql)))[0] as bigint);
    const page = await one("PRAGMA page_size");
    const count = await one("PRAGMA page_count");
    const free = await one("PRAGMA freelist_count");
    const trees = 1n + (await one("SELECT count(*) FROM sqlite_master WHERE rootpage > 0"));
    const above = (pages: bigint) => (pages > trees ? (pages - trees) * page : 0n);
    return { size: ETCD_EMPTY_DB_BYTES + above(count), inUse: ETCD_EMPTY_DB_BYTES + above(count - free) };
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
