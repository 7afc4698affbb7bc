// The history view on SQL: pages of events from the log table for watchers, compaction
// in short steps beside the writers, and polling for other processes' commits.
import type { EventsOptions, EventsPage, HistoryView } from "../../mvcc/backend.ts";
import type { Rev } from "../../mvcc/types.ts";
import { bounds, PREV_COLUMNS, readMeta, rowToEvent } from "./rows.ts";
import { compactIndex } from "./selector-index.ts";
import type { SqlDb } from "./sql-db.ts";

/**
 * log rows one compaction step looks at (it removes those superseded), so writers are never
 * held up for long: a revision may hold many rows (a transaction, a range deleted)
 */
const COMPACT_STEP_ROWS = 1000;

export class SqlHistory implements HistoryView {
  constructor(private readonly db: SqlDb) {}

  events(from: Rev, to: Rev, limit: number, opts: EventsOptions = {}): Promise<EventsPage> {
    const threads = this.db.threads;
    if (threads) return this.db.onThread(threads, (t) => t.events(from, to, limit, opts), () => this.eventsHere(from, to, limit, opts));
    return this.eventsHere(from, to, limit, opts);
  }

  private async eventsHere(from: Rev, to: Rev, limit: number, opts: EventsOptions): Promise<EventsPage> {
    const { range, bytes = Infinity, prevKv = true, subs = false } = opts;
    const keys = range ? bounds(range, "l.k") : { where: "1 = 1", params: [] };
    // the previous version is the key's log row at prev_rev
    const prev = prevKv ? "LEFT JOIN kv_log p ON p.k = l.k AND p.rev = l.prev_rev" : "";
    return this.db.driver.read(async (c) => {
      const { compactRevision } = await readMeta(c);
      // the sizes of the first events (LENGTH reads no blob) find where the page ends: at the
      // revision of the first event past either limit; a revision is never split, so a first
      // revision larger than the limits is returned whole
      const sizes = await c.all(
        `SELECT l.rev, LENGTH(l.k) + LENGTH(l.v)${prevKv ? " + COALESCE(LENGTH(p.v), 0)" : ""} AS n FROM kv_log l ${prev}
          WHERE l.rev >= ? AND l.rev <= ? AND ${keys.where} ORDER BY l.rev, l.sub LIMIT ${Math.max(1, limit) + 1}`,
        [from, to, ...keys.params],
      );
      let through = to;
      let total = 0;
      for (const [i, size] of sizes.entries()) {
        total += Number(size.n);
        if (i < limit && total <= bytes) continue;
        const next = size.rev as bigint;
        const first = sizes[0]?.rev as bigint;
        through = next > first ? next - 1n : first;
        break;
      }
      const rows = await c.all(
        `SELECT l.rev AS mod_rev, l.k, l.create_rev, l.version, l.lease, l.deleted, l.v${prevKv ? PREV_COLUMNS : ""}${subs ? ", l.sub" : ""}
           FROM kv_log l ${prev}
          WHERE l.rev >= ? AND l.rev <= ? AND ${keys.where} ORDER BY l.rev, l.sub`,
        [from, through, ...keys.params],
      );
      const events = rows.map(rowToEvent);
      if (subs) events.forEach((e, i) => (e.sub = BigInt(rows[i]?.sub as bigint)));
      return { events, through, compactRevision };
    });
  }

  async compact(rev: Rev): Promise<void> {
    const driver = this.db.driver;
    // commit tokens of compacted revisions are no longer needed
    await driver.write((c) => c.run("DELETE FROM commits WHERE rev <= ?", [rev]));
    const low = (await driver.read((c) => c.all("SELECT MIN(rev) AS rev FROM kv_log")))[0]?.rev as bigint | null;
    if (low == null) return;
    // A row goes when it is a tombstone or a newer row of its key at or below rev exists.
    // The doubly nested select lets MySQL delete from a table its subquery reads.
    const step = `DELETE FROM kv_log WHERE (rev, sub) IN (SELECT rev, sub FROM (
        SELECT l.rev, l.sub FROM kv_log l WHERE l.rev >= ? AND l.rev <= ? AND (l.deleted = 1 OR EXISTS
          (SELECT 1 FROM kv_log n WHERE n.k = l.k AND n.rev > l.rev AND n.rev <= ?))) doomed)`;
    for (let lo = low; lo <= rev;) {
      // a step ends with the revision of its COMPACT_STEP_ROWS-th row (a revision is never split)
      const edge = await driver.read((c) => c.all(`SELECT rev FROM kv_log WHERE rev >= ? ORDER BY rev, sub LIMIT 1 OFFSET ${COMPACT_STEP_ROWS}`, [lo]));
      const edgeRev = edge[0]?.rev as bigint | undefined;
      const hi = edgeRev !== undefined && edgeRev < rev ? edgeRev : rev;
      const started = performance.now();
      await driver.write(async (c) => {
        await c.run(step, [lo, hi, rev]);
        await compactIndex(c, lo, hi);
      });
      lo = hi + 1n;
      // writers get at least as long as the step held them (an SQLite step holds the event loop too)
      await new Promise((r) => setTimeout(r, Math.max(1, performance.now() - started)));
    }
  }

  onExternalCommit(notify: () => void): () => void {
    const pollMs = this.db.dialect.pollMs;
    if (pollMs === 0) return () => {};
    const timer = setInterval(notify, pollMs);
    timer.unref?.();
    return () => clearInterval(timer);
  }
}
