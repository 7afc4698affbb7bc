// Label and field selectors applied in the database (HariKube's storage-side filtering).
// Every log row's labels and selectable fields are kept beside it, written in the same
// transaction (kv_label, kv_field; see schema.ts and src/selectors/index-entries.ts) and
// compacted with it. A selected read then starts from the label index — one label value's
// keys, in key order — and tests the other requirements with lookups of the row's entries,
// so it costs what it returns, not the range. What the entries cannot decide (a value that
// cannot be decoded, a numeric comparison, a field another kind may hold) is kept, never
// dropped: such a read returns a superset, and strata checks the values it returned.
import type { KeyRange, Rev } from "../../mvcc/types.ts";
import { type IndexEntry, indexEntries, indexText, type LabelRequirement, OPAQUE, type Selection } from "../../selectors/index.ts";
import type { SqlValue } from "./driver.ts";

type Statement = [sql: string, params: SqlValue[]];

/** The statements that index a log row written at (rev, k) with this value (none for a value holding no object). */
export function indexRow(rev: Rev, k: Uint8Array, value: Uint8Array, insert: readonly [string, string] = ["INSERT INTO", ""]): Statement[] {
  const { labels, fields } = indexEntries(value);
  const out: Statement[] = [];
  const rows = (table: string, entries: IndexEntry[]) => {
    if (entries.length === 0) return;
    const params: SqlValue[] = [];
    for (const [name, v] of entries) params.push(rev, k, name, v);
    out.push([`${insert[0]} ${table} (rev, k, name, value) VALUES ${entries.map(() => "(?, ?, ?, ?)").join(", ")}${insert[1]}`, params]);
  };
  rows("kv_label", labels);
  rows("kv_field", fields);
  return out;
}

/** After a compaction step removed log rows in [lo, hi]: their entries go too. */
export function compactIndex(lo: Rev, hi: Rev): Statement[] {
  return ["kv_label", "kv_field"].map((t) => [
    `DELETE FROM ${t} WHERE rev >= ? AND rev <= ? AND NOT EXISTS (SELECT 1 FROM kv_log l WHERE l.rev = ${t}.rev AND l.k = ${t}.k)`,
    [lo, hi],
  ]);
}

/** Before a key's history is removed (it moved to another backend): its entries. */
export function forgetIndex(k: Uint8Array): Statement[] {
  return ["kv_label", "kv_field"].map((t) => [`DELETE FROM ${t} WHERE (rev, k) IN (SELECT rev, k FROM kv_log WHERE k = ?)`, [k]]);
}

/** the WHERE clause selecting a key range on column col */
function keyBounds(r: KeyRange, col: string): Statement {
  return r.end === undefined ? [`${col} >= ?`, [r.start]] : [`${col} >= ? AND ${col} < ?`, [r.start, r.end]];
}

/**
 * The requirements as a condition on the row whose key and revision are in columns k and
 * rev, as the index decides them: true also where it cannot decide (an opaque value, a
 * field the row has no entry for). `driver` is left out: the row came from its lookup.
 */
function condition(s: Selection, driver: LabelRequirement | undefined, k: string, rev: string): Statement {
  const parts: string[] = [], params: SqlValue[] = [];
  const probe = (table: string, cond: string, values: SqlValue[], negate = false) => {
    parts.push(`${negate ? "NOT " : ""}EXISTS (SELECT 1 FROM ${table} s WHERE s.rev = ${rev} AND s.k = ${k} AND ${cond})`);
    params.push(...values);
  };
  const list = (values: string[]) => values.map(() => "?").join(", ");
  let positive = driver !== undefined;
  for (const r of s.labels) {
    if (r === driver) continue;
    const name = indexText(r.key), values = r.values.map(indexText);
    switch (r.op) {
      case "=":
      case "in":
        probe("kv_label", `(s.name = ? OR (s.name = ? AND s.value IN (${list(values)})))`, [OPAQUE[0], name, ...values]);
        positive = true;
        break;
      case "!=":
      case "notin":
        probe("kv_label", `s.name = ? AND s.value IN (${list(values)})`, [name, ...values], true);
        break;
      case "exists":
      case ">":
      case "<":
        probe("kv_label", "s.name IN (?, ?)", [OPAQUE[0], name]);
        positive = true;
        break;
      case "!":
        probe("kv_label", "s.name = ?", [name], true);
        break;
    }
  }
  for (const t of s.fields) {
    // a row without the field's entry is kept: its kind may not have the field, or it is opaque
    probe("kv_field", `s.name = ? AND s.value ${t.op === "=" ? "<>" : "="} ?`, [indexText(t.field), indexText(t.value)], true);
  }
  // every object has entries (an opaque one its marker); a value holding no object has none
  if (!positive) {
    parts.push(`(EXISTS (SELECT 1 FROM kv_label s WHERE s.rev = ${rev} AND s.k = ${k}) OR EXISTS (SELECT 1 FROM kv_field s WHERE s.rev = ${rev} AND s.k = ${k}))`);
  }
  return [parts.length ? parts.join(" AND ") : "1 = 1", params];
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
 * version, lease[, v]), not ordered: every part is a lookup of label entries in key order,
 * or, without a label to start from, the range.
 */
function selectedRows(q: SelectedRead): Statement {
  const driver = driverOf(q.selection);
  const value = q.keysOnly ? "" : ", kv.v AS v";
  const arms: Statement[] = [];
  const atMost: Statement = q.at === undefined ? ["", []] : [" AND kv.mod_rev <= ?", [q.at]];
  if (driver) {
    const [inRange, rangeParams] = keyBounds(q.range, "x.k");
    const [cond, condParams] = condition(q.selection, driver, "x.k", "x.rev");
    // one lookup per value (each comes in key order), one for the values that cannot be decoded
    const lookups: Statement[] = driver.op === "=" || driver.op === "in"
      ? [...driver.values.map((v): Statement => ["x.name = ? AND x.value = ?", [indexText(driver.key), indexText(v)]]), ["x.name = ? AND x.value = ?", [...OPAQUE]]]
      : [["x.name = ?", [indexText(driver.key)]], ["x.name = ? AND x.value = ?", [...OPAQUE]]];
    for (const [lookup, lookupParams] of lookups) {
      arms.push([
        `SELECT x.k AS k, kv.create_rev AS create_rev, kv.mod_rev AS mod_rev, kv.version AS version, kv.lease AS lease${value}
           FROM kv_label x CROSS JOIN kv
          WHERE ${lookup} AND ${inRange} AND kv.k = x.k AND kv.mod_rev = x.rev${atMost[0]} AND ${cond}`,
        [...lookupParams, ...rangeParams, ...atMost[1], ...condParams],
      ]);
    }
  } else {
    const [inRange, rangeParams] = keyBounds(q.range, "kv.k");
    const [cond, condParams] = condition(q.selection, undefined, "kv.k", "kv.mod_rev");
    arms.push([
      `SELECT kv.k AS k, kv.create_rev AS create_rev, kv.mod_rev AS mod_rev, kv.version AS version, kv.lease AS lease${value}
         FROM kv WHERE ${inRange}${atMost[0]} AND ${cond}`,
      [...rangeParams, ...atMost[1], ...condParams],
    ]);
  }
  if (q.at !== undefined) {
    // keys changed since `at`: their newest log row at or below it, when not a deletion
    const [changed, changedParams] = keyBounds(q.range, "c.k");
    const [cond, condParams] = condition(q.selection, undefined, "l.k", "l.rev");
    arms.push([
      `SELECT l.k AS k, l.create_rev AS create_rev, l.rev AS mod_rev, l.version AS version, l.lease AS lease${q.keysOnly ? "" : ", l.v AS v"}
         FROM (SELECT DISTINCT c.k FROM kv_log c WHERE ${changed} AND c.rev > ?) c
         JOIN kv_log l ON l.k = c.k AND l.rev = (SELECT MAX(m.rev) FROM kv_log m WHERE m.k = c.k AND m.rev <= ?)
        WHERE l.deleted = 0 AND ${cond}`,
      [...changedParams, q.at, q.at, ...condParams],
    ]);
  }
  return [arms.map((a) => a[0]).join("\nUNION ALL\n"), arms.flatMap((a) => a[1])];
}

/** the rows of a selected read in key order, at most `limit` (0: all) */
export function selectedRangeSql(q: SelectedRead, limit: number): Statement {
  const [rows, params] = selectedRows(q);
  return [`${rows}\nORDER BY k${limit > 0 ? ` LIMIT ${limit}` : ""}`, params];
}

/** how many rows a selected read returns */
export function selectedCountSql(q: SelectedRead): Statement {
  const [rows, params] = selectedRows({ ...q, keysOnly: true });
  return [`SELECT COUNT(*) AS n FROM (${rows}) selected`, params];
}
