// The SQL schema, versioned. kv_log keeps one row per key per revision (history, for
// reads at older revisions and watch replay); kv keeps the live version of each key, so
// latest reads cost what they return, not what the history holds. Keys and values are
// bytes. Column k is the key and v the value ("key" and "value" are reserved in MySQL).
import type { Dialect } from "./dialect.ts";

export const SCHEMA_VERSION = 5;

/** statements that bring a database from schema version `from` to SCHEMA_VERSION */
export function schemaStatements(from: number, d: Dialect): string[] {
  const { keyType: K, valueType: V, intType: I, tableOptions: T, keyOnlyTableOptions: KT, indexTextType: X, packedTextType: P } = d;
  const steps: string[][] = [
    // version 1
    [
      `CREATE TABLE meta (name VARCHAR(64) NOT NULL PRIMARY KEY, num ${I} NOT NULL)${T}`,
      `CREATE TABLE kv_log (
         rev ${I} NOT NULL,
         sub ${I} NOT NULL,
         k ${K} NOT NULL,
         create_rev ${I} NOT NULL,
         prev_rev ${I},
         version ${I} NOT NULL,
         lease ${I} NOT NULL,
         deleted ${I} NOT NULL,
         v ${V} NOT NULL,
         PRIMARY KEY (rev, sub))${T}`,
      `CREATE UNIQUE INDEX kv_log_key_rev ON kv_log (k, rev)`,
      // a second guard against lost updates: two writes can never follow one version
      // (prev_rev is NULL for a creation, and NULLs never collide); dropped in version 5
      `CREATE UNIQUE INDEX kv_log_key_prev ON kv_log (k, prev_rev)`,
      `CREATE TABLE kv (
         k ${K} NOT NULL PRIMARY KEY,
         create_rev ${I} NOT NULL,
         mod_rev ${I} NOT NULL,
         version ${I} NOT NULL,
         lease ${I} NOT NULL,
         v ${V} NOT NULL)${T}`,
      `CREATE INDEX kv_lease ON kv (lease)`,
      `CREATE TABLE leases (id ${I} NOT NULL PRIMARY KEY, ttl ${I} NOT NULL, expires_at ${I} NOT NULL)${T}`,
      // one row per committed batch, so a commit whose answer was lost can be checked
      `CREATE TABLE commits (token ${I} NOT NULL PRIMARY KEY, rev ${I} NOT NULL)${T}`,
    ],
    // version 2: where counting a range of kv's keys reads more than the keys, an index of
    // the keys alone (the dialect's countKvIndex: MySQL's)
    [...d.countKvIndex],
    // version 3: selectors applied in the database (selector-index.ts). kv_select holds each
    // log row's labels and selectable fields packed (src/selectors/index-entries.ts; NULL
    // for a value that cannot be decoded), by the row's (rev, k); kv_label finds the rows
    // of one label value in key order (an undecodable value's row has name '\t').
    // A database that already holds rows gets them from `strata reindex`: until then its
    // selected reads are filtered in strata.
    [
      `CREATE TABLE kv_select (rev ${I} NOT NULL, k ${K} NOT NULL, labels ${P}, fields ${P}, PRIMARY KEY (rev, k))${T}`,
      `CREATE TABLE kv_label (name ${X} NOT NULL, value ${X} NOT NULL, k ${K} NOT NULL, rev ${I} NOT NULL,
         PRIMARY KEY (name, value, k, rev))${KT}`,
      `INSERT INTO meta (name, num) SELECT 'select_index', CASE WHEN EXISTS (SELECT 1 FROM kv_log) THEN 0 ELSE 1 END`,
    ],
    // version 4: etcd's auth store (users, roles, whether auth is on; src/api/auth-store.ts
    // encodes it) in one row whose revision is etcd's auth revision, apart from the key
    // revisions: every process on the database compares-and-swaps it and polls the revision
    [`CREATE TABLE auth (id ${I} NOT NULL PRIMARY KEY, revision ${I} NOT NULL, data ${V} NOT NULL)${T}`],
    // version 5: without the unique index (k, prev_rev). Each new key put a leaf page of it
    // into every commit (a tenth of a bulk load's log bytes, 2 µs of SQLite's 16 per 1 KiB
    // create); the lost updates it guarded against are kept out without it: a batch reads
    // a key's live version only after taking the revision lock (BEGIN IMMEDIATE, or meta's
    // rows FOR UPDATE), so two writes never follow one version unless two batches ran from
    // one revision, and those both write their first log row at (the next revision, sub 0),
    // which kv_log's primary key refuses (docs/performance.md, "Bulk load: where a create goes on
    // SQLite"). No query reads it.
    [d.dropIndex("kv_log_key_prev", "kv_log")],
  ];
  return steps.slice(from).flat();
}
