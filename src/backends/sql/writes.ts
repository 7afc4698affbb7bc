// The write view on SQL: group-committed batches. A batch takes the revision lock, so
// commit order is revision order even with several strata processes on one database;
// a batch whose commit went unanswered is settled by its commit token.
import type { WriteResult, WriteTx, WriteView } from "../../mvcc/backend.ts";
import { EtcdError, outcomeUnknown } from "../../mvcc/errors.ts";
import type { SqlConn } from "./driver.ts";
import { metaOf, randomId } from "./rows.ts";
import { IndexRows, MERGE_ROWS, markLabelRows, mergeLabelRows } from "./selector-index.ts";
import type { SqlDb } from "./sql-db.ts";
import { LiveKeys, SqlWriteTx } from "./write-tx.ts";

/** how long a batch whose commit went unanswered looks for its commit token */
const COMMIT_CHECK_MS = 2000;

/** runs last inside a batch's database transaction; when it throws, the batch is rolled back */
export type BeforeCommit = (c: SqlConn) => Promise<void>;

export class SqlWrites implements WriteView {
  /**
   * kv_select rows written since label rows were last merged (dialect.labelRowsLater), as
   * counted here: the first batch after opening merges whatever an earlier run left
   */
  private unmerged = MERGE_ROWS;

  constructor(private readonly db: SqlDb) {}

  /**
   * Runs the batch. When the database fails while committing, the outcome is unknown:
   * the batch's token tells whether it committed, and until that is known nothing is
   * acknowledged; when it cannot be read back, the batch fails as "may have been
   * applied", never as not applied. `beforeCommit` runs last inside the database
   * transaction (a log copy records its log position there: sqlite/log-copy.ts).
   */
  async write<T>(txns: Array<(tx: WriteTx) => Promise<T>>, keys: Uint8Array[] = [], beforeCommit?: BeforeCommit): Promise<WriteResult<T>[]> {
    const token = randomId();
    let results: WriteResult<T>[] | undefined;
    try {
      return await this.writeBatch(txns, keys, token, (r) => (results = r), beforeCommit);
    } catch (err) {
      if (!results) throw err;
      const committed = await this.committed(token);
      if (committed) return results;
      if (committed === undefined) throw outcomeUnknown(this.db.name, err);
      throw err;
    }
  }

  /**
   * Looks for a batch's token; undefined when it cannot be read within COMMIT_CHECK_MS.
   * Short: the writes queued behind the batch wait for it, and its clients are answered
   * "may have been applied" by their deadline anyway. Tried often, so a database that
   * is back is seen at once.
   */
  private async committed(token: bigint): Promise<boolean | undefined> {
    const deadline = Date.now() + COMMIT_CHECK_MS;
    for (let wait = 25; ; wait = Math.min(wait * 2, 250)) {
      try {
        const rows = await this.db.driver.read((c) => c.all("SELECT rev FROM commits WHERE token = ?", [token]));
        return rows.length > 0;
      } catch {
        if (Date.now() + wait > deadline) return undefined;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private writeBatch<T>(
    txns: Array<(tx: WriteTx) => Promise<T>>,
    keys: Uint8Array[],
    token: bigint,
    ready: (results: WriteResult<T>[]) => void,
    beforeCommit?: BeforeCommit,
  ): Promise<WriteResult<T>[]> {
    const { db } = this;
    return db.driver.write(async (c) => {
      const live = new LiveKeys();
      const later = db.dialect.labelRowsLater === true;
      const indexRows = db.indexing ? new IndexRows(undefined, !later) : undefined;
      // the keys are read after the lock is taken (statements run in order on a connection)
      const [meta] = await Promise.all([db.dialect.lockMeta(c), live.fetch(c, keys)]);
      const start = metaOf(meta);
      if (indexRows && later) markLabelRows(c, meta, start.revision);
      let { revision, compactRevision } = start;
      const results: WriteResult<T>[] = [];
      for (const fn of txns) {
        const tx = new SqlWriteTx(db.name, c, db.dialect, revision, compactRevision, live, indexRows);
        try {
          results.push({ ok: true, value: await fn(tx) });
          revision = tx.newRevision;
          compactRevision = tx.newCompactRevision;
        } catch (error) {
          // etcd's refusals all come before a transaction writes, so a failed one left
          // nothing behind; one that fails after writing cannot be undone alone (no
          // savepoints: they cost round trips), so the whole batch is rolled back
          if (tx.wrote) throw new Error(`a transaction failed after writing, its batch was rolled back: ${String(error)}`);
          // anything but a refusal is the database failing (and may have aborted the
          // database transaction): the whole batch fails with it
          if (!(error instanceof EtcdError)) throw error;
          results.push({ ok: false, error });
        }
      }
      if (revision !== start.revision) c.send("UPDATE meta SET num = ? WHERE name = 'revision'", [revision]);
      if (compactRevision !== start.compactRevision) {
        c.send("UPDATE meta SET num = ? WHERE name = 'compact_revision'", [compactRevision]);
      }
      if (indexRows) {
        indexRows.flush(c);
        if (later && (this.unmerged += indexRows.flushed) >= MERGE_ROWS) {
          await mergeLabelRows(c, db.dialect.insertIgnoring, revision);
          this.unmerged = 0;
        }
      }
      c.send("INSERT INTO commits (token, rev) VALUES (?, ?)", [token, revision]);
      await beforeCommit?.(c);
      ready(results);
      db.saw(start.revision);
      return results;
    });
  }
}
