// What differs between SQL engines: column types, upserts, how a writer takes the
// revision lock, how size is measured and space returned. Not the logic.
import type { Row, SqlConn, SqlDriver } from "./driver.ts";

export interface Dialect {
  readonly name: "sqlite" | "postgres" | "mysql";
  /** column types: keys (indexed bytes), values (large bytes), integers */
  readonly keyType: string;
  readonly valueType: string;
  readonly intType: string;
  /** the longest key the key column and its indexes hold (none: as long as a request allows) */
  readonly maxKeyBytes?: number;
  /** column type of the selector index's names and values (src/selectors/index-entries.ts bounds them at 128 bytes) */
  readonly indexTextType: string;
  /** column type of the selector index's packed labels and fields (a few KiB at most) */
  readonly packedTextType: string;
  /** SQL true when text column `hay` holds the text of parameter `needle` (both placeholders or columns) */
  contains(hay: string, needle: string): string;
  /**
   * The selector index's kv_label rows are written for many commits at once
   * (selector-index.ts, mergeLabelRows) rather than with each: only where every reader
   * of the database is this process (an older strata would not read the unmerged rows)
   */
  readonly labelRowsLater?: boolean;
  /** INSERT that skips rows whose primary key exists: its start and its end */
  readonly insertIgnoring: readonly [string, string];
  /** suffix for CREATE TABLE (MySQL's engine and row format) */
  readonly tableOptions: string;
  /** suffix for CREATE TABLE of a table that is all primary key (SQLite keeps it without a rowid) */
  readonly keyOnlyTableOptions: string;
  /** DROP INDEX of an index of `table` (MySQL names the table, the others do not) */
  dropIndex(index: string, table: string): string;
  /** where keys of kv are counted from (MySQL is told to use the index of keys alone) */
  readonly countKv: string;
  /** the statements that make the index countKv counts from, if it is not the key's own (schema version 2) */
  readonly countKvIndex: readonly string[];
  /**
   * INSERT INTO kv that copies the log row (rev, sub) = (?, ?) just written, replacing an
   * existing row for the key: the value travels to the database once, not twice (a
   * server driver's bytea/blob encoding of a large value is most of a put's cost)
   */
  readonly upsertKv: string;
  /**
   * Where handing the value over again costs nothing (an embedded database): INSERT INTO kv
   * from the values (k, create_rev, mod_rev, version, lease, v), replacing an existing row,
   * without looking the log row up again. Used instead of upsertKv when set.
   */
  readonly upsertKvValues?: string;
  /**
   * Makes the current transaction the only writer until it ends (row locks on meta, or
   * nothing where BEGIN did it) and reads the meta rows, in one statement.
   */
  lockMeta(c: SqlConn): Promise<Row[]>;
  /** Serializes schema migrations between processes starting at once (nothing where the file is exclusive). */
  lockSchema?(c: SqlConn): Promise<void>;
  unlockSchema?(c: SqlConn): Promise<void>;
  /**
   * Engines without advisory or named locks (engine-profiles.ts): migrations are serialized
   * through a lease row instead, their DDL outside transactions (schema-lease.ts)
   */
  readonly schemaLease?: boolean;
  /** how often to look for commits made by other strata processes (0: no other process can write) */
  readonly pollMs: number;
  /** bytes the database occupies and bytes in use */
  size(c: SqlConn): Promise<{ size: bigint; inUse: bigint }>;
  defragment(d: SqlDriver): Promise<void>;
  /**
   * Whether an error is the database out of space ("full") or damaged ("corrupt"):
   * failures that retrying does not mend. undefined for anything else.
   */
  fault(err: unknown): "full" | "corrupt" | undefined;
}

/** an error's code (SQLite's and PostgreSQL's are strings, MySQL's errno a number) and message */
export function errorParts(err: unknown): { code: string; errno: number; message: string } {
  const e = err as { code?: unknown; errno?: unknown; message?: unknown } | undefined;
  return {
    code: typeof e?.code === "string" ? e.code : "",
    errno: typeof e?.errno === "number" ? e.errno : 0,
    message: typeof e?.message === "string" ? e.message : String(err),
  };
}

export const KV_COLUMNS = "k, create_rev, mod_rev, version, lease, v";

/** the upsert of engines with INSERT … ON CONFLICT (SQLite, PostgreSQL) */
export const UPSERT_ON_CONFLICT = `INSERT INTO kv (k, create_rev, mod_rev, version, lease, v)
  SELECT k, create_rev, rev, version, lease, v FROM kv_log WHERE rev = ? AND sub = ?
  ON CONFLICT (k) DO UPDATE SET create_rev = excluded.create_rev, mod_rev = excluded.mod_rev,
    version = excluded.version, lease = excluded.lease, v = excluded.v`;

/** upsertKvValues in the ON CONFLICT form (SQLite's) */
export const UPSERT_VALUES_ON_CONFLICT = `INSERT INTO kv (k, create_rev, mod_rev, version, lease, v) VALUES (?, ?, ?, ?, ?, ?)
  ON CONFLICT (k) DO UPDATE SET create_rev = excluded.create_rev, mod_rev = excluded.mod_rev,
    version = excluded.version, lease = excluded.lease, v = excluded.v`;
