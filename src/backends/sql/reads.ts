// The read view on SQL: consistent ranges at a revision. The latest state comes from the
// current table in one statement; older revisions combine it with the history; ranges
// with selectors are answered by the selector index when it is kept and complete.
import type { ReadView } from "../../mvcc/backend.ts";
import { isSingleKey } from "../../mvcc/keyrange.ts";
import { checkRevision } from "../../mvcc/revisions.ts";
import type { KeyRange, KeyValue, RangeQuery, RangeResult, Rev } from "../../mvcc/types.ts";
import { indexAnswersExactly } from "../../selectors/index.ts";
import { KV_COLUMNS } from "./dialect.ts";
import type { Row, SqlConn, SqlValue } from "./driver.ts";
import { bounds, metaOf, oneRow, readMeta, rowToKv } from "./rows.ts";
import { type SelectedRead, selectedCountSql, selectedRangeSql } from "./selector-index.ts";
import type { SqlDb } from "./sql-db.ts";

export class SqlReads implements ReadView {
  constructor(private readonly db: SqlDb) {}

  get name(): string {
    return this.db.name;
  }

  async revisions(): Promise<{ revision: Rev; compactRevision: Rev }> {
    const { revision, compactRevision } = metaOf(await this.db.driver.query("SELECT name, num FROM meta"));
    return { revision: this.db.saw(revision), compactRevision };
  }

  /**
   * One key costs less to read than the trip to a thread, and so does the first key of a
   * range, uncounted (a seek: mvcc/count-warmup.ts looks for prefixes so, and a fresh
   * server then starts no thread); a range's cost is the client's choice.
   */
  async range(q: RangeQuery): Promise<RangeResult> {
    if (q.select) {
      // decided here, where the setting is known: a read thread reads the index when told to
      const exact = indexAnswersExactly(q.select.selection);
      const usable = this.db.indexing && (await this.db.selectIndexComplete());
      if (q.select.exactOnly && !(exact && usable)) return { kvs: [], count: 0n, revision: (await this.revisions()).revision };
      // without the index, the plain range is every key the selection may keep; its count
      // would be the range's, not the selection's, so it is not read
      if (!usable) q = { ...q, select: undefined, uncounted: true };
    }
    const threads = this.db.threads;
    const seek = q.limit === 1 && q.uncounted === true && !q.select;
    if (threads && !seek && !isSingleKey(q.range)) return this.db.onThread(threads, (t) => t.range(q), () => this.rangeHere(q));
    return this.rangeHere(q);
  }

  private async rangeHere(q: RangeQuery): Promise<RangeResult> {
    const uncounted = q.uncounted ?? false;
    if (q.select) return this.selectedRangeHere(q, q.select);
    // a read at the newest revision (a list's next page, usually) is a latest read
    if (q.revision === 0n || q.revision >= this.db.newest) {
      const latest = await this.latestRange(q, uncounted);
      if (latest) return latest;
    }
    return this.db.driver.read(async (c) => {
      const { revision, compactRevision } = await readMeta(c);
      const at = checkRevision(q.revision, revision, compactRevision);
      const reads = new RangeReads(c, this.db.dialect.countKv);
      const historic = at === revision ? undefined : at;
      const count = q.knownCount?.revision === at ? q.knownCount.count : uncounted ? 0n : await reads.count(q.range, historic);
      const kvs = q.countOnly ? [] : await reads.range(q.range, historic, q.limit, q.keysOnly);
      return { kvs, count, revision };
    });
  }

  /**
   * A range with selectors, applied by the selector index (selector-index.ts): exactly
   * when the index decides them all, else narrowed to a superset. Only asked for when the
   * index is kept and complete (range() decides).
   */
  private selectedRangeHere(q: RangeQuery, select: NonNullable<RangeQuery["select"]>): Promise<RangeResult> {
    const exact = indexAnswersExactly(select.selection);
    const dialect = this.db.dialect;
    return this.db.driver.read(async (c) => {
      const { revision, compactRevision } = await readMeta(c);
      this.db.saw(revision);
      const at = checkRevision(q.revision, revision, compactRevision);
      const read: SelectedRead = { range: q.range, selection: select.selection, at: at === revision ? undefined : at, keysOnly: q.keysOnly };
      const rows = q.countOnly ? [] : await c.all(...selectedRangeSql(dialect, read, q.limit));
      // the rows are all there is when no limit cut them; a superset's count means nothing
      const whole = !q.countOnly && (q.limit === 0 || rows.length < q.limit);
      const count = !exact ? 0n : whole ? BigInt(rows.length) : await countOf(c.all(...selectedCountSql(dialect, read)));
      return { kvs: rows.map((r) => rowToKv(r)), count, revision, selected: exact ? "exact" : "superset" };
    });
  }

  /**
   * A read of the latest state in one statement on its own snapshot (no transaction):
   * the revisions ride along with the rows, and the count is asked for only when a
   * limit may have cut the rows short and it is not known already. When no row comes
   * back the range is counted again with the revisions, and read anew if keys appeared
   * in between. Undefined when the read asked for another revision than the newest.
   */
  private async latestRange(q: RangeQuery, uncounted: boolean): Promise<RangeResult | undefined> {
    const b = bounds(q.range, "k");
    const meta = `(SELECT num FROM meta WHERE name = 'revision') AS m_rev`;
    const counted = `(SELECT COUNT(*) FROM ${this.db.dialect.countKv} WHERE ${b.where}) AS m_count`;
    const wanted = (rev: Rev) => q.revision === 0n || q.revision === rev;
    let known = q.knownCount;
    for (;;) {
      if (!q.countOnly) {
        const limited = q.limit > 0;
        const counting = limited && !known && !uncounted;
        const cols = q.keysOnly ? "k, create_rev, mod_rev, version, lease" : KV_COLUMNS;
        const rows = await this.db.driver.query(
          `SELECT ${meta}, ${counting ? `${counted}, ` : ""}${cols} FROM kv WHERE ${b.where} ORDER BY k${limited ? ` LIMIT ${q.limit}` : ""}`,
          counting ? [...b.params, ...b.params] : b.params,
        );
        const [first] = rows;
        if (first) {
          const revision = this.db.saw(first.m_rev as bigint);
          if (!wanted(revision)) return undefined;
          // a count carried from the previous page holds only at its own revision
          if (known && known.revision !== revision) {
            known = undefined;
            continue;
          }
          const count = known ? known.count : counting ? BigInt(first.m_count as bigint) : BigInt(rows.length);
          return { kvs: rows.map((r) => rowToKv(r)), count, revision };
        }
      }
      // no rows came back: the count is the database's (keys may have appeared since)
      if (!q.countOnly) known = undefined;
      const m = oneRow(await this.db.driver.query(`SELECT ${meta}${known ? "" : `, ${counted}`}`, known ? [] : b.params));
      const revision = this.db.saw(m.m_rev as bigint);
      if (!wanted(revision)) return undefined;
      if (known && known.revision !== revision) {
        known = undefined;
        continue;
      }
      const count = known ? known.count : BigInt(m.m_count as bigint);
      if (q.countOnly || count === 0n) return { kvs: [], count, revision };
    }
  }
}

/** the n of a `SELECT COUNT(*) AS n` */
async function countOf(rows: Promise<Row[]>): Promise<bigint> {
  return oneRow(await rows).n as bigint;
}

/** Range reads: the latest state from the current table, older revisions combined with history. */
export class RangeReads {
  constructor(
    private readonly c: SqlConn,
    /** the dialect's countKv */
    private readonly countKv: string,
  ) {}

  /**
   * Rows live at revision `at`: current rows unchanged since, plus for keys changed
   * after `at` their newest history row at or below it (when that is not a tombstone).
   */
  private atRevision(r: KeyRange, at: Rev, withValue: boolean): { sql: string; params: SqlValue[] } {
    const cur = bounds(r, "k");
    const changed = bounds(r, "c.k");
    return {
      sql: `SELECT k, create_rev, mod_rev, version, lease${withValue ? ", v" : ""} FROM kv WHERE ${cur.where} AND mod_rev <= ?
            UNION ALL
            SELECT l.k, l.create_rev, l.rev AS mod_rev, l.version, l.lease${withValue ? ", l.v" : ""} FROM
              (SELECT DISTINCT c.k FROM kv_log c WHERE ${changed.where} AND c.rev > ?) c
              JOIN kv_log l ON l.k = c.k
               AND l.rev = (SELECT MAX(m.rev) FROM kv_log m WHERE m.k = c.k AND m.rev <= ?)
             WHERE l.deleted = 0`,
      params: [...cur.params, at, ...changed.params, at, at],
    };
  }

  /** `at` undefined: the latest state */
  async count(r: KeyRange, at: Rev | undefined): Promise<bigint> {
    if (at === undefined) {
      const { where, params } = bounds(r, "k");
      return countOf(this.c.all(`SELECT COUNT(*) AS n FROM ${this.countKv} WHERE ${where}`, params));
    }
    const q = this.atRevision(r, at, false);
    return countOf(this.c.all(`SELECT COUNT(*) AS n FROM (${q.sql}) live`, q.params));
  }

  async range(r: KeyRange, at: Rev | undefined, limit: number, keysOnly: boolean): Promise<KeyValue[]> {
    const lim = limit > 0 ? ` LIMIT ${limit}` : "";
    let rows: Row[];
    if (at === undefined) {
      const { where, params } = bounds(r, "k");
      const cols = keysOnly ? "k, create_rev, mod_rev, version, lease" : KV_COLUMNS;
      rows = await this.c.all(`SELECT ${cols} FROM kv WHERE ${where} ORDER BY k${lim}`, params);
    } else {
      const q = this.atRevision(r, at, !keysOnly);
      rows = await this.c.all(`SELECT * FROM (${q.sql}) live ORDER BY k${lim}`, q.params);
    }
    return rows.map((r) => rowToKv(r));
  }
}
