// Label and field selectors applied in the database (HariKube's storage-side filtering).
// Every log row's labels and selectable fields are kept beside it, written in the same
// transaction and compacted with it (see schema.ts and src/selectors/index-entries.ts):
// kv_select packs them into one row per log row, kv_label lists each label value's rows
// in key order. A selected read starts from the keys of one label value and tests the
// other requirements on the row's packed entries, so it costs what it returns, not the
// range. Where the dialect says so (SQLite), kv_label rows are written for many commits
// at once (mergeLabelRows): a label value's rows sit on a page of their own, so writing
// them with each commit wrote a page per label value per commit. The kv_select rows past
// meta's LABELS_THROUGH (the unmerged tail, a few thousand rows at most) are then read by
// their packed labels instead. What the entries cannot decide (a value that cannot be decoded, a numeric
// comparison, a field another kind may hold) is kept, never dropped: such a read returns
// a superset, and strata checks the values it returned.
import type { KeyRange, KeyValue, Rev } from "../../mvcc/types.ts";
import { indexEntries, indexText, labelEntries, type LabelRequirement, OWNER_ENTRY, packedEntry, packedName, type Selection, UID_ENTRY } from "../../selectors/index.ts";
import { type Dialect, KV_COLUMNS } from "./dialect.ts";
import type { Row, SqlConn, SqlValue } from "./driver.ts";

type Statement = [sql: string, params: SqlValue[]];

/** the label row of a value that cannot be decoded, which every selection keeps ("\t" is no label's index text) */
const OPAQUE = ["\t", ""] as const;

/** index rows per INSERT (at most 4 parameters each: every engine's limit is far above) */
const INSERT_ROWS = 500;

/**
 * The meta row naming the revision through which kv_label holds the label rows of every
 * kv_select row; absent where kv_label rows are written with each commit (then kv_label
 * holds them all).
 */
export const LABELS_THROUGH = "label_rows_through";

/** kv_select rows left unmerged before a write batch merges their label rows into kv_label */
export const MERGE_ROWS = 2048;

/**
 * meta's `select_index`: 0 the index does not cover every row; 1 it does, kv_label holding
 * every row's label rows; 2 it does, with the rows past LABELS_THROUGH read from kv_select.
 * A strata of an earlier release knows 0 and 1 only: it takes 2 for an incomplete index and
 * filters values instead of missing the tail's rows (a crash leaves the tail unmerged).
 */
export const INDEX_COMPLETE = 1n;
export const INDEX_COMPLETE_WITH_TAIL = 2n;

/**
 * The index rows of a write batch's puts, computed as each put is made and inserted
 * together before the batch commits: a few statements for the batch instead of two per
 * put. `insert`: the INSERT's start and end (the dialect's insertIgnoring when rows may
 * be indexed already).
 */
export class IndexRows {
  private selects: SqlValue[][] = [];
  private labels: SqlValue[][] = [];
  /** kv_select rows flushed so far */
  flushed = 0;

  /** `labelRows`: false where mergeLabelRows writes them later */
  constructor(private readonly insert: readonly [string, string] = ["INSERT INTO", ""], private readonly labelRows = true) {}

  /** Indexes the log row written at (rev, k) with this value (nothing for a value holding no object). */
  add(rev: Rev, k: Uint8Array, value: Uint8Array): void {
    const entries = indexEntries(value);
    if (entries === undefined) return;
    if (entries === "opaque") {
      this.selects.push([rev, k, null, null]);
      if (this.labelRows) this.labels.push([...OPAQUE, k, rev]);
      return;
    }
    this.selects.push([rev, k, entries.packedLabels, entries.packedFields]);
    if (this.labelRows) for (const [name, v] of labelEntries(entries.packedLabels)) this.labels.push([name, v, k, rev]);
  }

  /** Sends the rows added since the last flush on the batch's connection. */
  flush(c: SqlConn): void {
    insertRows(c, this.insert, "kv_select (rev, k, labels, fields)", this.selects);
    insertRows(c, this.insert, "kv_label (name, value, k, rev)", this.labels);
    this.flushed += this.selects.length;
    this.selects = [];
    this.labels = [];
  }
}

function insertRows(c: SqlConn, insert: readonly [string, string], into: string, rows: SqlValue[][]): void {
  for (let i = 0; i < rows.length; i += INSERT_ROWS) {
    const chunk = rows.slice(i, i + INSERT_ROWS);
    c.send(`${insert[0]} ${into} VALUES ${chunk.map(() => "(?, ?, ?, ?)").join(", ")}${insert[1]}`, chunk.flat());
  }
}

/**
 * Before a write batch that leaves its label rows to mergeLabelRows: marks that kv_label
 * holds those of every row so far, unless it is marked already (`meta`: the meta rows as
 * the batch read them; `revision`: the revision before the batch).
 */
export function markLabelRows(c: SqlConn, meta: Row[], revision: Rev): void {
  if (!meta.some((r) => r.name === LABELS_THROUGH)) c.send("INSERT INTO meta (name, num) VALUES (?, ?)", [LABELS_THROUGH, revision]);
  if (meta.some((r) => r.name === "select_index" && r.num === INDEX_COMPLETE)) {
    c.send("UPDATE meta SET num = ? WHERE name = 'select_index' AND num = ?", [INDEX_COMPLETE_WITH_TAIL, INDEX_COMPLETE]);
  }
}

/**
 * Writes the label rows of the kv_select rows past LABELS_THROUGH that are still their
 * key's current version (the only ones kv_label is read for) into kv_label and moves
 * it to `through` (the batch's last revision; every kv_select row is at or below it), in
 * the caller's write transaction. Sorted, so the rows of one label value go in together.
 * Rows already there are skipped: `strata reindex` writes its label rows directly, and
 * merges when it ends, so no row is both in kv_label and past the mark.
 */
export async function mergeLabelRows(c: SqlConn, insertIgnoring: readonly [string, string], through: Rev): Promise<void> {
  const [mark] = await c.all("SELECT num FROM meta WHERE name = ?", [LABELS_THROUGH]);
  // never marked: every label row was written with its commit
  if (!mark) return;
  // kv_label is read for current versions only: a version replaced before the merge needs no label rows
  const tail = await c.all("SELECT s.rev, s.k, s.labels FROM kv_select s CROSS JOIN kv WHERE s.rev > ? AND kv.k = s.k AND kv.mod_rev = s.rev", [mark.num as bigint]);
  insertRows(c, insertIgnoring, "kv_label (name, value, k, rev)", byLabelValue(labelRowsOf(tail)));
  c.send("UPDATE meta SET num = ? WHERE name = ?", [through, LABELS_THROUGH]);
}

/**
 * Merges every label row left in the tail and says the index holds them all in kv_label
 * (select_index 2 -> 1), in the caller's write transaction: at open, so that rows an earlier
 * release wrote past the mark with their label rows (it writes them with each commit) are
 * not read twice, and at close, so that an earlier release opening the file next finds
 * every label row.
 */
export async function mergeAllLabelRows(c: SqlConn, insertIgnoring: readonly [string, string], through: Rev): Promise<void> {
  await mergeLabelRows(c, insertIgnoring, through);
  c.send("UPDATE meta SET num = ? WHERE name = 'select_index' AND num = ?", [INDEX_COMPLETE, INDEX_COMPLETE_WITH_TAIL]);
}

/**
 * The rows grouped by label value, the values in order and each value's rows in key order
 * (kv_label's order, one row per key here): the rows of one value go in together. Only
 * where they land depends on it, so the groups are sorted as JavaScript strings (a key
 * per value), not row by row.
 */
function byLabelValue(rows: SqlValue[][]): SqlValue[][] {
  const groups = new Map<string, SqlValue[][]>();
  for (const r of rows) {
    // "\t" is in no index text
    const value = `${r[0] as string}\t${r[1] as string}`;
    const group = groups.get(value);
    if (group) group.push(r);
    else groups.set(value, [r]);
  }
  const out: SqlValue[][] = [];
  for (const value of [...groups.keys()].sort()) {
    const group = groups.get(value)!;
    if (group.length > 1) group.sort((a, b) => Buffer.compare(a[2] as Uint8Array, b[2] as Uint8Array));
    for (const r of group) out.push(r);
  }
  return out;
}

/** the label rows of kv_select rows (rev, k, labels) */
function labelRowsOf(rows: Row[]): SqlValue[][] {
  const out: SqlValue[][] = [];
  for (const r of rows) {
    if (r.labels == null) {
      out.push([...OPAQUE, r.k as Uint8Array, r.rev as bigint]);
      continue;
    }
    const text = typeof r.labels === "string" ? r.labels : new TextDecoder().decode(r.labels as Uint8Array);
    for (const [name, value] of labelEntries(text)) out.push([name, value, r.k as Uint8Array, r.rev as bigint]);
  }
  return out;
}

/** label rows removed per statement */
const DELETE_LABELS = 100;

/** Removes the index of the kv_select rows given (rev, k, labels), in the caller's transaction. */
async function removeIndex(run: (sql: string, params: SqlValue[]) => Promise<unknown>, rows: Row[]): Promise<void> {
  const labels = labelRowsOf(rows);
  // each row by its primary key (a list of row values is not SQL every engine takes)
  for (let i = 0; i < labels.length; i += DELETE_LABELS) {
    const chunk = labels.slice(i, i + DELETE_LABELS);
    await run(`DELETE FROM kv_label WHERE ${chunk.map(() => "(name = ? AND value = ? AND k = ? AND rev = ?)").join(" OR ")}`, chunk.flat());
  }
  for (let i = 0; i < rows.length; i += DELETE_LABELS) {
    const chunk = rows.slice(i, i + DELETE_LABELS);
    await run(`DELETE FROM kv_select WHERE ${chunk.map(() => "(rev = ? AND k = ?)").join(" OR ")}`, chunk.flatMap((r) => [r.rev as bigint, r.k as Uint8Array]));
  }
}

/** After log rows with revisions in [lo, hi] were removed (compaction): their index goes too. */
export async function compactIndex(c: SqlConn, lo: Rev, hi: Rev): Promise<void> {
  const gone = await c.all(
    `SELECT s.rev, s.k, s.labels FROM kv_select s WHERE s.rev >= ? AND s.rev <= ?
        AND NOT EXISTS (SELECT 1 FROM kv_log l WHERE l.rev = s.rev AND l.k = s.k)`,
    [lo, hi],
  );
  await removeIndex((sql, params) => c.run(sql, params), gone);
}

/** Before a key's history is removed (it moved to another backend): its index. */
export async function forgetIndex(c: SqlConn, k: Uint8Array): Promise<void> {
  const rows = await c.all("SELECT s.rev, s.k, s.labels FROM kv_log l JOIN kv_select s ON s.rev = l.rev AND s.k = l.k WHERE l.k = ?", [k]);
  await removeIndex((sql, params) => c.run(sql, params), rows);
}

/** the WHERE clause selecting a key range on column col */
function keyBounds(r: KeyRange, col: string): Statement {
  return r.end === undefined ? [`${col} >= ?`, [r.start]] : [`${col} >= ? AND ${col} < ?`, [r.start, r.end]];
}

/**
 * The requirements as a condition on kv_select row `s` (joined to the row read), as its
 * entries decide them: true also where they cannot decide (an undecodable value's NULL
 * entries, a field the row has no entry for). `driver` is left out: the row came from its
 * lookup. Undefined when nothing is left to test.
 */
function condition(d: Dialect, s: Selection, driver: LabelRequirement | undefined): Statement | undefined {
  const parts: string[] = [], params: SqlValue[] = [];
  const has = (col: string, needle: string) => {
    params.push(needle);
    return d.contains(`s.${col}`, "?");
  };
  const anyOf = (col: string, needles: string[]) => `(${needles.map((n) => has(col, n)).join(" OR ")})`;
  for (const r of s.labels) {
    if (r === driver) continue;
    const entries = r.values.map((v) => packedEntry(r.key, v));
    switch (r.op) {
      case "=":
      case "in":
        parts.push(`(s.labels IS NULL OR ${anyOf("labels", entries)})`);
        break;
      case "!=":
      case "notin":
        parts.push(`(s.labels IS NULL OR NOT ${anyOf("labels", entries)})`);
        break;
      case "exists":
      case ">":
      case "<":
        parts.push(`(s.labels IS NULL OR ${has("labels", packedName(r.key))})`);
        break;
      case "!":
        parts.push(`(s.labels IS NULL OR NOT ${has("labels", packedName(r.key))})`);
        break;
    }
  }
  for (const t of s.fields) {
    // a row without the field's entry is kept: its kind may not have the field
    const entry = has("fields", packedEntry(t.field, t.value));
    parts.push(t.op === "=" ? `(s.fields IS NULL OR ${entry} OR NOT ${has("fields", packedName(t.field))})` : `(s.fields IS NULL OR NOT ${entry})`);
  }
  return parts.length ? [parts.join(" AND "), params] : undefined;
}

/** The requirement whose label lookups the read starts from: a value (or a few), else a label's presence. */
function driverOf(s: Selection): LabelRequirement | undefined {
  const byValue = s.labels.filter((r) => r.op === "=" || r.op === "in").sort((a, b) => a.values.length - b.values.length)[0];
  return byValue ?? s.labels.find((r) => r.op === "exists" || r.op === ">" || r.op === "<");
}

export interface SelectedRead {
  range: KeyRange;
  selection: Selection;
  /** read at this older revision; undefined: the latest state */
  at?: Rev;
  keysOnly: boolean;
}

/**
 * The rows a selected read returns (columns as a range read's: k, create_rev, mod_rev,
 * version, lease[, v]), not ordered: each part is a lookup of one label value's rows in
 * key order, or, without a label to start from, the range.
 */
function selectedRows(d: Dialect, q: SelectedRead): Statement {
  const driver = driverOf(q.selection);
  const value = q.keysOnly ? "" : ", kv.v AS v";
  const arms: Statement[] = [];
  const atMost: Statement = q.at === undefined ? ["", []] : [" AND kv.mod_rev <= ?", [q.at]];
  if (driver) {
    const [inRange, rangeParams] = keyBounds(q.range, "x.k");
    const cond = condition(d, q.selection, driver);
    const join = cond ? " CROSS JOIN kv_select s" : "";
    const joined = cond ? ` AND s.rev = x.rev AND s.k = x.k AND ${cond[0]}` : "";
    // one lookup per value (each comes in key order), one for the values that cannot be decoded
    const name = indexText(driver.key);
    const lookups: Statement[] = driver.op === "=" || driver.op === "in"
      ? [...driver.values.map((v): Statement => ["x.name = ? AND x.value = ?", [name, indexText(v)]]), ["x.name = ? AND x.value = ?", [...OPAQUE]]]
      : [["x.name = ?", [name]], ["x.name = ? AND x.value = ?", [...OPAQUE]]];
    for (const [lookup, lookupParams] of lookups) {
      arms.push([
        `SELECT x.k AS k, kv.create_rev AS create_rev, kv.mod_rev AS mod_rev, kv.version AS version, kv.lease AS lease${value}
           FROM kv_label x CROSS JOIN kv${join}
          WHERE ${lookup} AND ${inRange} AND kv.k = x.k AND kv.mod_rev = x.rev${atMost[0]}${joined}`,
        [...lookupParams, ...rangeParams, ...atMost[1], ...(cond?.[1] ?? [])],
      ]);
    }
    // the rows whose label rows are not merged yet, by their packed labels
    const [tailRange, tailRangeParams] = keyBounds(q.range, "s.k");
    const [all, allParams] = condition(d, q.selection, undefined) ?? ["1 = 1", []];
    arms.push([
      `SELECT s.k AS k, kv.create_rev AS create_rev, kv.mod_rev AS mod_rev, kv.version AS version, kv.lease AS lease${value}
         FROM meta m CROSS JOIN kv_select s CROSS JOIN kv
        WHERE m.name = ? AND s.rev > m.num AND ${tailRange} AND kv.k = s.k AND kv.mod_rev = s.rev${atMost[0]} AND ${all}`,
      [LABELS_THROUGH, ...tailRangeParams, ...atMost[1], ...allParams],
    ]);
  } else {
    const [inRange, rangeParams] = keyBounds(q.range, "kv.k");
    const [cond, condParams] = condition(d, q.selection, undefined) ?? ["1 = 1", []];
    arms.push([
      `SELECT kv.k AS k, kv.create_rev AS create_rev, kv.mod_rev AS mod_rev, kv.version AS version, kv.lease AS lease${value}
         FROM kv CROSS JOIN kv_select s
        WHERE ${inRange}${atMost[0]} AND s.rev = kv.mod_rev AND s.k = kv.k AND ${cond}`,
      [...rangeParams, ...atMost[1], ...condParams],
    ]);
  }
  if (q.at !== undefined) {
    // keys changed since `at`: their newest log row at or below it, when not a deletion
    const [changed, changedParams] = keyBounds(q.range, "c.k");
    const [cond, condParams] = condition(d, q.selection, undefined) ?? ["1 = 1", []];
    arms.push([
      `SELECT l.k AS k, l.create_rev AS create_rev, l.rev AS mod_rev, l.version AS version, l.lease AS lease${q.keysOnly ? "" : ", l.v AS v"}
         FROM (SELECT DISTINCT c.k FROM kv_log c WHERE ${changed} AND c.rev > ?) c
         JOIN kv_log l ON l.k = c.k AND l.rev = (SELECT MAX(m.rev) FROM kv_log m WHERE m.k = c.k AND m.rev <= ?)
         JOIN kv_select s ON s.rev = l.rev AND s.k = l.k
        WHERE l.deleted = 0 AND ${cond}`,
      [...changedParams, q.at, q.at, ...condParams],
    ]);
  }
  return [arms.map((a) => a[0]).join("\nUNION ALL\n"), arms.flatMap((a) => a[1])];
}

/** the rows of a selected read in key order, at most `limit` (0: all) */
export function selectedRangeSql(d: Dialect, q: SelectedRead, limit: number): Statement {
  const [rows, params] = selectedRows(d, q);
  return [`${rows}\nORDER BY k${limit > 0 ? ` LIMIT ${limit}` : ""}`, params];
}

/** how many rows a selected read returns */
export function selectedCountSql(d: Dialect, q: SelectedRead): Statement {
  const [rows, params] = selectedRows(d, { ...q, keysOnly: true });
  return [`SELECT COUNT(*) AS n FROM (${rows}) selected`, params];
}

/**
 * The live key-values whose current version has the ownership entry `name` = uid (the
 * garbage collector's lookups), in key order. Rows indexed earlier in the batch must have
 * been flushed.
 */
export async function ownedRows(c: SqlConn, d: Dialect, which: "dependents" | "withUid", uid: string, toKv: (r: Row) => KeyValue): Promise<KeyValue[]> {
  const columns = KV_COLUMNS.split(", ").map((col) => `kv.${col} AS ${col}`).join(", ");
  const name = which === "dependents" ? OWNER_ENTRY : UID_ENTRY;
  // and the rows whose label rows are not merged yet (mergeLabelRows), by their packed labels
  const rows = await c.all(
    `SELECT ${columns} FROM kv_label x CROSS JOIN kv WHERE x.name = ? AND x.value = ? AND kv.k = x.k AND kv.mod_rev = x.rev
     UNION ALL
     SELECT ${columns} FROM meta m CROSS JOIN kv_select s CROSS JOIN kv
      WHERE m.name = ? AND s.rev > m.num AND ${d.contains("s.labels", "?")} AND kv.k = s.k AND kv.mod_rev = s.rev
     ORDER BY k`,
    [name, indexText(uid), LABELS_THROUGH, packedEntry(name, uid)],
  );
  return rows.map(toKv);
}
