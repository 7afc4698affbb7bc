// The admin view on SQL: opening (the schema migrated, the selector index's state
// recorded), closing, size, defragmentation, faults, and building the selector index
// for rows written without it.
import { setImmediate } from "node:timers";
import type { AdminView, BackendState, DbSize, StorageFault } from "../../mvcc/backend.ts";
import type { Rev } from "../../mvcc/types.ts";
import { migrateSchema } from "./migrate.ts";
import { readMeta } from "./rows.ts";
import { compactIndex, IndexRows, mergeAllLabelRows, mergeLabelRows } from "./selector-index.ts";
import type { SqlDb } from "./sql-db.ts";
import { log } from "../../util/log.ts";

/** log rows indexed per write transaction when the selector index is built for existing rows */
const INDEX_BATCH = 500;

export class SqlAdmin implements AdminView {
  constructor(private readonly db: SqlDb) {}

  get name(): string {
    return this.db.name;
  }

  async open(): Promise<BackendState> {
    const { driver } = this.db;
    await migrateSchema(this.db);
    await driver.write(async (c) => {
      // rows written without the index leave it incomplete; an empty log has nothing to index
      if (!this.db.indexing) await c.run("UPDATE meta SET num = 0 WHERE name = 'select_index'");
      else await c.run("UPDATE meta SET num = 1 WHERE name = 'select_index' AND NOT EXISTS (SELECT 1 FROM kv_log)");
      if (this.db.indexing && this.db.dialect.labelRowsLater) await mergeAllLabelRows(c, this.db.dialect.insertIgnoring, (await readMeta(c)).revision);
    });
    return driver.read((c) => readMeta(c));
  }

  async close(): Promise<void> {
    const { driver, dialect } = this.db;
    if (this.db.indexing && dialect.labelRowsLater) {
      // an earlier release opening the file reads kv_label alone: it finds every label row there
      await driver.write(async (c) => mergeAllLabelRows(c, dialect.insertIgnoring, (await readMeta(c)).revision)).catch((err: unknown) =>
        log("warn", "selector index: label rows not merged at close (merged when strata next writes)", { backend: this.db.name, error: String(err) })
      );
    }
    await this.db.threads?.close();
    await this.db.driver.close();
  }

  size(): Promise<DbSize> {
    return this.db.driver.read((c) => this.db.dialect.size(c));
  }

  async defragment(): Promise<void> {
    await this.db.dialect.defragment(this.db.driver);
  }

  onFault(fn: (f: StorageFault) => void): void {
    this.db.onFault(fn);
  }

  keepSelectorIndex(on: boolean): void {
    this.db.indexing = on;
  }

  async selectorIndex(): Promise<"off" | "complete" | "incomplete"> {
    if (!this.db.indexing) return "off";
    return (await this.db.selectIndexComplete()) ? "complete" : "incomplete";
  }

  /**
   * Indexes the log rows written before the index existed, in batches, beside writers and
   * compaction: each batch is read and indexed in one write transaction (rows indexed
   * twice are skipped), then entries whose row a compaction removed meanwhile are removed.
   */
  async buildSelectIndex(progress?: (rows: number) => void): Promise<number> {
    const { driver, dialect } = this.db;
    if (await this.db.selectIndexComplete()) return 0;
    let done = 0;
    let after: [Rev, bigint] = [-1n, -1n];
    for (;;) {
      const batch = await driver.write(async (c) => {
        const rows = await c.all(
          `SELECT rev, sub, k, v FROM kv_log WHERE deleted = 0 AND (rev > ? OR (rev = ? AND sub > ?)) ORDER BY rev, sub LIMIT ${INDEX_BATCH}`,
          [after[0], after[0], after[1]],
        );
        const index = new IndexRows(dialect.insertIgnoring);
        for (const r of rows) index.add(r.rev as bigint, r.k as Uint8Array, r.v as Uint8Array);
        index.flush(c);
        return rows;
      });
      const [first, last] = [batch[0], batch.at(-1)];
      if (!first || !last) break;
      await driver.write((c) => compactIndex(c, first.rev as bigint, last.rev as bigint));
      after = [last.rev as bigint, last.sub as bigint];
      done += batch.length;
      progress?.(done);
      await new Promise((r) => setImmediate(r));
    }
    // label rows it wrote for rows past the mark (dialect.labelRowsLater) would be read twice, from kv_label and from the tail: the mark moves past them
    await driver.write(async (c) => mergeLabelRows(c, dialect.insertIgnoring, (await readMeta(c)).revision));
    await this.db.completeSelectIndex();
    return done;
  }
}
