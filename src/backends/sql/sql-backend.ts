// The MVCC store on any SQL engine: the same queries for SQLite, PostgreSQL and MySQL,
// with the differences kept in a Dialect. A write batch takes the revision lock, so
// commit order is revision order even with several strata processes on one database.
import { setImmediate } from "node:timers";
import { type AuthRecord, type Backend, type BackendState, type DbSize, type EventsOptions, type EventsPage, type OwnerLookup, StorageFault, type WriteResult, type WriteTx } from "../../mvcc/backend.ts";
import { EtcdError, outcomeUnknown } from "../../mvcc/errors.ts";
import { isSingleKey, keyString } from "../../mvcc/keyrange.ts";
import { checkRevision } from "../../mvcc/revisions.ts";
import type { Event, KeyRange, KeyValue, LeaseRecord, RangeQuery, RangeResult, Rev } from "../../mvcc/types.ts";
import { DELETE, PUT } from "../../mvcc/types.ts";
import { indexAnswersExactly } from "../../selectors/index.ts";
import { log } from "../../observe/log.ts";
import { type Dialect, KV_COLUMNS } from "./dialect.ts";
import { eachCallThrough, type Row, type SqlConn, type SqlDriver, type SqlValue } from "./driver.ts";
import { SCHEMA_VERSION, schemaStatements } from "./schema.ts";
import { idempotent, withSchemaLease } from "./schema-lease.ts";
import { compactIndex, forgetIndex, IndexRows, ownedRows, type SelectedRead, selectedCountSql, selectedRangeSql } from "./selector-index.ts";

const EMPTY = new Uint8Array(0);
/**
 * log rows one compaction step looks at (it removes those superseded), so writers are never
 * held up for long: a revision may hold many rows (a transaction, a range deleted)
 */
const COMPACT_STEP_ROWS = 1000;
/** log rows indexed per write transaction when the selector index is built for existing rows */
const INDEX_BATCH = 500;
/**
 * keys a write transaction deletes between turns of the event loop: an embedded SQLite
 * runs each statement on the event loop, and a DeleteRange of 190,000 keys (etcdctl check
 * perf's last step) froze every other client for seconds. The transaction stays open over
 * the pauses (writes wait their turn anyway; reads see the last commit), so it is atomic.
 */
const DELETES_PER_TURN = 1000;
/** how long a batch whose commit went unanswered looks for its commit token */
const COMMIT_CHECK_MS = 2000;

/**
 * Read threads (read-pool.ts), each with its own connection running this same code: reads
 * whose cost a client controls — ranges over many keys, history pages — are read and
 * encoded there, so the event loop keeps the writer, the watch hub and the connections.
 */
export interface ReadThreads {
  range(q: RangeQuery): Promise<RangeResult>;
  events(from: Rev, to: Rev, limit: number, opts: EventsOptions): Promise<EventsPage>;
  close(): Promise<void>;
}

export class SqlBackend implements Backend {
  /** the newest revision this process has seen: a read below it is a read of history */
  private newest: Rev = 0n;
  private readonly faultListeners: Array<(f: StorageFault) => void> = [];
  /** the database, its errors of running out of space or of damage turned into StorageFaults */
  protected readonly driver: SqlDriver;

  constructor(
    readonly name: string,
    driver: SqlDriver,
    protected readonly dialect: Dialect,
    private readonly threads?: ReadThreads,
  ) {
    this.driver = this.faultsOf(driver);
  }

  /**
   * A read on a thread. Its backend there recognised any fault, but the listeners are
   * here; and the engine may have to hold the answer back (see SqliteBackend). A thread
   * whose own connection failed (a database server back from an outage that this thread
   * has not reconnected to yet) is not the database refusing: the read is made here, on
   * the connections writes use, whose state is what clients see.
   */
  private async onThread<T>(threads: ReadThreads, read: (t: ReadThreads) => Promise<T>, here: () => Promise<T>): Promise<T> {
    try {
      const result = await read(threads);
      await this.threadReadSettled();
      return result;
    } catch (err) {
      if (err instanceof StorageFault) this.reportFault(err);
      if (err instanceof StorageFault || err instanceof EtcdError) throw err;
      return here();
    }
  }

  /** Resolves when an answer read on a thread may be given. */
  protected async threadReadSettled(): Promise<void> {}

  /** the first damage found: told to listeners that come later too */
  private damage: StorageFault | undefined;

  onFault(fn: (f: StorageFault) => void): void {
    this.faultListeners.push(fn);
    if (this.damage) fn(this.damage);
  }

  /** Tells the listeners of a fault found outside a driver call (a background check). */
  protected reportFault(fault: StorageFault): void {
    if (fault.kind === "corrupt") this.damage ??= fault;
    for (const fn of this.faultListeners) fn(fault);
  }

  /** Every driver call passes here: a fault is recognised once, where the database reported it. */
  private faultsOf(d: SqlDriver): SqlDriver {
    const watch = async <T>(call: () => Promise<T>): Promise<T> => {
      try {
        return await call();
      } catch (err) {
        const kind = err instanceof StorageFault ? undefined : this.dialect.fault(err);
        if (!kind) throw err;
        const fault = new StorageFault(kind, this.name, err instanceof Error ? err.message : String(err));
        this.reportFault(fault);
        throw fault;
      }
    };
    return eachCallThrough(d, watch);
  }

  async open(): Promise<BackendState> {
    const version = await this.driver.read((c) => schemaVersion(c, this.name));
    if (version > SCHEMA_VERSION) {
      throw new Error(`${this.name}: database schema version ${version} is newer than this strata's (${SCHEMA_VERSION}); upgrade strata`);
    }
    if (version < SCHEMA_VERSION) await this.migrate(version);
    await this.driver.write(async (c) => {
      // rows written without the index leave it incomplete; an empty log has nothing to index
      if (!this.indexing) await c.run("UPDATE meta SET num = 0 WHERE name = 'select_index'");
      else await c.run("UPDATE meta SET num = 1 WHERE name = 'select_index' AND NOT EXISTS (SELECT 1 FROM kv_log)");
    });
    return this.driver.read((c) => readMeta(c));
  }

  /** whether writes keep the selector index (--selector-index) */
  private indexing = false;

  keepSelectorIndex(on: boolean): void {
    this.indexing = on;
  }

  private async migrate(from: number): Promise<void> {
    if (this.dialect.schemaLease) return this.migrateUnderLease();
    let migrated = false;
    await this.driver.write(async (c) => {
      // another strata process may be migrating at the same moment: the first one wins
      await this.dialect.lockSchema?.(c);
      if ((await schemaVersion(c, this.name)) !== from) return void (await this.dialect.unlockSchema?.(c));
      for (const stmt of schemaStatements(from, this.dialect)) await c.run(stmt);
      await recordSchema(c, from, "INSERT INTO");
      await this.dialect.unlockSchema?.(c);
      migrated = true;
    });
    if (migrated) this.logMigrated(from);
  }

  /** one line from the process that upgraded a database (not for a new one), so an operator sees which did */
  private logMigrated(from: number): void {
    if (from > 0) log("info", "database schema upgraded", { backend: this.name, from, to: SCHEMA_VERSION });
  }

  /** The schema made under the lease row (schema-lease.ts): each statement on its own, safe to run twice. */
  private migrateUnderLease(): Promise<void> {
    return withSchemaLease(this.driver, this.dialect, this.name, async () => {
      const from = await this.driver.read((c) => schemaVersion(c, this.name));
      if (from >= SCHEMA_VERSION) return;
      for (const stmt of schemaStatements(from, this.dialect)) await this.driver.exec(idempotent(stmt, this.dialect));
      await this.driver.write((c) => recordSchema(c, from, this.dialect.insertIgnoring[0], this.dialect.insertIgnoring[1]));
      this.logMigrated(from);
    });
  }

  async readAuth(): Promise<AuthRecord | undefined> {
    const [row] = await this.driver.query("SELECT revision, data FROM auth WHERE id = 1");
    return row && { revision: BigInt(row.revision as bigint), data: new Uint8Array(row.data as Uint8Array) };
  }

  async authRevision(): Promise<Rev> {
    const [row] = await this.driver.query("SELECT revision FROM auth WHERE id = 1");
    return row ? BigInt(row.revision as bigint) : 0n;
  }

  async writeAuth(expected: Rev, next: AuthRecord): Promise<boolean> {
    return this.driver.write(async (c) => {
      if (expected === 0n) {
        // the first record: a second process writing it at once finds the row there
        const [start, end] = this.dialect.insertIgnoring;
        return (await c.run(`${start} auth (id, revision, data) VALUES (1, ?, ?)${end}`, [next.revision, next.data])) === 1;
      }
      return (await c.run("UPDATE auth SET revision = ?, data = ? WHERE id = 1 AND revision = ?", [next.revision, next.data, expected])) === 1;
    });
  }

  async close(): Promise<void> {
    await this.threads?.close();
    await this.driver.close();
  }

  async revisions(): Promise<{ revision: Rev; compactRevision: Rev }> {
    const { revision, compactRevision } = metaOf(await this.driver.query("SELECT name, num FROM meta"));
    return { revision: this.saw(revision), compactRevision };
  }

  /** One key costs less to read than the trip to a thread; a range's cost is the client's choice. */
  async range(q: RangeQuery): Promise<RangeResult> {
    if (q.select) {
      // decided here, where the setting is known: a read thread reads the index when told to
      const exact = indexAnswersExactly(q.select.selection);
      const usable = this.indexing && (await this.selectIndexComplete());
      if (q.select.exactOnly && !(exact && usable)) return { kvs: [], count: 0n, revision: (await this.revisions()).revision };
      // without the index, the plain range is every key the selection may keep; its count
      // would be the range's, not the selection's, so it is not read
      if (!usable) q = { ...q, select: undefined, uncounted: true };
    }
    if (this.threads && !isSingleKey(q.range)) return this.onThread(this.threads, (t) => t.range(q), () => this.rangeHere(q));
    return this.rangeHere(q);
  }

  private async rangeHere(q: RangeQuery): Promise<RangeResult> {
    const uncounted = q.uncounted ?? false;
    if (q.select) return this.selectedRangeHere(q, q.select);
    // a read at the newest revision (a list's next page, usually) is a latest read
    if (q.revision === 0n || q.revision >= this.newest) {
      const latest = await this.latestRange(q, uncounted);
      if (latest) return latest;
    }
    return this.driver.read(async (c) => {
      const { revision, compactRevision } = await readMeta(c);
      const at = checkRevision(q.revision, revision, compactRevision);
      const reads = new RangeReads(c, this.dialect.countKv);
      const historic = at === revision ? undefined : at;
      const count = q.knownCount?.revision === at ? q.knownCount.count : uncounted ? 0n : await reads.count(q.range, historic);
      const kvs = q.countOnly ? [] : await reads.range(q.range, historic, q.limit, q.keysOnly);
      return { kvs, count, revision };
    });
  }

  /** whether the selector index holds every row (a database from before it gets it from `strata reindex`) */
  private indexComplete = false;

  async selectorIndex(): Promise<"off" | "complete" | "incomplete"> {
    if (!this.indexing) return "off";
    return (await this.selectIndexComplete()) ? "complete" : "incomplete";
  }

  /** whether the index covers every row: read from the database until it does (`strata reindex` may complete it while strata serves) */
  private async selectIndexComplete(): Promise<boolean> {
    if (!this.indexComplete) {
      const rows = await this.driver.query("SELECT num FROM meta WHERE name = 'select_index'");
      this.indexComplete = rows[0]?.num === 1n;
    }
    return this.indexComplete;
  }

  /**
   * Indexes the log rows written before the index existed, in batches, beside writers and
   * compaction: each batch is read and indexed in one write transaction (rows indexed
   * twice are skipped), then entries whose row a compaction removed meanwhile are removed.
   */
  async buildSelectIndex(progress?: (rows: number) => void): Promise<number> {
    if (await this.selectIndexComplete()) return 0;
    let done = 0;
    let after: [Rev, bigint] = [-1n, -1n];
    for (;;) {
      const batch = await this.driver.write(async (c) => {
        const rows = await c.all(
          `SELECT rev, sub, k, v FROM kv_log WHERE deleted = 0 AND (rev > ? OR (rev = ? AND sub > ?)) ORDER BY rev, sub LIMIT ${INDEX_BATCH}`,
          [after[0], after[0], after[1]],
        );
        const index = new IndexRows(this.dialect.insertIgnoring);
        for (const r of rows) index.add(r.rev as bigint, r.k as Uint8Array, r.v as Uint8Array);
        index.flush(c);
        return rows;
      });
      if (batch.length === 0) break;
      const [first, last] = [batch[0]!, batch.at(-1)!];
      await this.driver.write((c) => compactIndex(c, first.rev as bigint, last.rev as bigint));
      after = [last.rev as bigint, last.sub as bigint];
      done += batch.length;
      progress?.(done);
      await new Promise((r) => setImmediate(r));
    }
    await this.driver.write((c) => c.run("UPDATE meta SET num = 1 WHERE name = 'select_index'"));
    this.indexComplete = true;
    return done;
  }

  /**
   * A range with selectors, applied by the selector index (selector-index.ts): exactly
   * when the index decides them all, else narrowed to a superset. Only asked for when the
   * index is kept and complete (range() decides).
   */
  private selectedRangeHere(q: RangeQuery, select: NonNullable<RangeQuery["select"]>): Promise<RangeResult> {
    const exact = indexAnswersExactly(select.selection);
    return this.driver.read(async (c) => {
      const { revision, compactRevision } = await readMeta(c);
      this.saw(revision);
      const at = checkRevision(q.revision, revision, compactRevision);
      const read: SelectedRead = { range: q.range, selection: select.selection, at: at === revision ? undefined : at, keysOnly: q.keysOnly };
      const rows = q.countOnly ? [] : await c.all(...selectedRangeSql(this.dialect, read, q.limit));
      // the rows are all there is when no limit cut them; a superset's count means nothing
      const whole = !q.countOnly && (q.limit === 0 || rows.length < q.limit);
      const count = !exact ? 0n : whole ? BigInt(rows.length) : ((await c.all(...selectedCountSql(this.dialect, read)))[0]!.n as bigint);
      return { kvs: rows.map((r) => rowToKv(r)), count, revision, selected: exact ? "exact" : "superset" };
    });
  }

  /** Notes a revision read from the database; returns it. */
  private saw(revision: Rev): Rev {
    if (revision > this.newest) this.newest = revision;
    return revision;
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
    const counted = `(SELECT COUNT(*) FROM ${this.dialect.countKv} WHERE ${b.where}) AS m_count`;
    const wanted = (rev: Rev) => q.revision === 0n || q.revision === rev;
    let known = q.knownCount;
    for (;;) {
      if (!q.countOnly) {
        const limited = q.limit > 0;
        const counting = limited && !known && !uncounted;
        const cols = q.keysOnly ? "k, create_rev, mod_rev, version, lease" : KV_COLUMNS;
        const rows = await this.driver.query(
          `SELECT ${meta}, ${counting ? `${counted}, ` : ""}${cols} FROM kv WHERE ${b.where} ORDER BY k${limited ? ` LIMIT ${q.limit}` : ""}`,
          counting ? [...b.params, ...b.params] : b.params,
        );
        if (rows.length > 0) {
          const revision = this.saw(rows[0]!.m_rev as bigint);
          if (!wanted(revision)) return undefined;
          // a count carried from the previous page holds only at its own revision
          if (known && known.revision !== revision) {
            known = undefined;
            continue;
          }
          const count = known ? known.count : counting ? BigInt(rows[0]!.m_count as bigint) : BigInt(rows.length);
          return { kvs: rows.map((r) => rowToKv(r)), count, revision };
        }
      }
      // no rows came back: the count is the database's (keys may have appeared since)
      if (!q.countOnly) known = undefined;
      const [m] = await this.driver.query(`SELECT ${meta}${known ? "" : `, ${counted}`}`, known ? [] : b.params);
      const revision = this.saw(m!.m_rev as bigint);
      if (!wanted(revision)) return undefined;
      if (known && known.revision !== revision) {
        known = undefined;
        continue;
      }
      const count = known ? known.count : BigInt(m!.m_count as bigint);
      if (q.countOnly || count === 0n) return { kvs: [], count, revision };
    }
  }

  /**
   * Runs the batch. When the database fails while committing, the outcome is unknown:
   * the batch's token tells whether it committed, and until that is known nothing is
   * acknowledged; when it cannot be read back, the batch fails as "may have been
   * applied", never as not applied. `beforeCommit` runs last inside the database
   * transaction; when it throws, the batch is rolled back (the NATS backend appends the
   * batch to its log there).
   */
  async write<T>(
    txns: Array<(tx: WriteTx) => Promise<T>>,
    keys: Uint8Array[] = [],
    beforeCommit?: (c: SqlConn) => Promise<void>,
  ): Promise<WriteResult<T>[]> {
    const token = randomId();
    let results: WriteResult<T>[] | undefined;
    try {
      return await this.writeBatch(txns, keys, token, (r) => (results = r), beforeCommit);
    } catch (err) {
      if (!results) throw err;
      const committed = await this.committed(token);
      if (committed) return results;
      if (committed === undefined) throw outcomeUnknown(this.name, err);
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
        const rows = await this.driver.read((c) => c.all("SELECT rev FROM commits WHERE token = ?", [token]));
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
    beforeCommit?: (c: SqlConn) => Promise<void>,
  ): Promise<WriteResult<T>[]> {
    return this.driver.write(async (c) => {
      const live = new LiveKeys();
      const indexRows = this.indexing ? new IndexRows() : undefined;
      // the keys are read after the lock is taken (statements run in order on a connection)
      const [meta] = await Promise.all([this.dialect.lockMeta(c), live.fetch(c, keys)]);
      const start = metaOf(meta);
      let { revision, compactRevision } = start;
      const results: WriteResult<T>[] = [];
      for (const fn of txns) {
        const tx = new SqlWriteTx(this.name, c, this.dialect, revision, compactRevision, live, indexRows);
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
      indexRows?.flush(c);
      c.send("INSERT INTO commits (token, rev) VALUES (?, ?)", [token, revision]);
      await beforeCommit?.(c);
      ready(results);
      this.saw(start.revision);
      return results;
    });
  }

  events(from: Rev, to: Rev, limit: number, opts: EventsOptions = {}): Promise<EventsPage> {
    if (this.threads) return this.onThread(this.threads, (t) => t.events(from, to, limit, opts), () => this.eventsHere(from, to, limit, opts));
    return this.eventsHere(from, to, limit, opts);
  }

  private async eventsHere(from: Rev, to: Rev, limit: number, opts: EventsOptions): Promise<EventsPage> {
    const { range, bytes = Infinity, prevKv = true, subs = false } = opts;
    const keys = range ? bounds(range, "l.k") : { where: "1 = 1", params: [] };
    // the previous version is the key's log row at prev_rev
    const prev = prevKv ? "LEFT JOIN kv_log p ON p.k = l.k AND p.rev = l.prev_rev" : "";
    return this.driver.read(async (c) => {
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
      for (let i = 0; i < sizes.length; i++) {
        total += Number(sizes[i]!.n);
        if (i < limit && total <= bytes) continue;
        const next = sizes[i]!.rev as bigint;
        const first = sizes[0]!.rev as bigint;
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
      if (subs) events.forEach((e, i) => (e.sub = BigInt(rows[i]!.sub as bigint)));
      return { events, through, compactRevision };
    });
  }

  async compact(rev: Rev): Promise<void> {
    // commit tokens of compacted revisions are no longer needed
    await this.driver.write((c) => c.run("DELETE FROM commits WHERE rev <= ?", [rev]));
    const low = (await this.driver.read((c) => c.all("SELECT MIN(rev) AS rev FROM kv_log")))[0]?.rev as bigint | null;
    if (low == null) return;
    // A row goes when it is a tombstone or a newer row of its key at or below rev exists.
    // The doubly nested select lets MySQL delete from a table its subquery reads.
    const step = `DELETE FROM kv_log WHERE (rev, sub) IN (SELECT rev, sub FROM (
        SELECT l.rev, l.sub FROM kv_log l WHERE l.rev >= ? AND l.rev <= ? AND (l.deleted = 1 OR EXISTS
          (SELECT 1 FROM kv_log n WHERE n.k = l.k AND n.rev > l.rev AND n.rev <= ?))) doomed)`;
    for (let lo = low; lo <= rev;) {
      // a step ends with the revision of its COMPACT_STEP_ROWS-th row (a revision is never split)
      const edge = await this.driver.read((c) => c.all(`SELECT rev FROM kv_log WHERE rev >= ? ORDER BY rev, sub LIMIT 1 OFFSET ${COMPACT_STEP_ROWS}`, [lo]));
      const hi = edge[0] && (edge[0].rev as bigint) < rev ? (edge[0].rev as bigint) : rev;
      const started = performance.now();
      await this.driver.write(async (c) => {
        await c.run(step, [lo, hi, rev]);
        await compactIndex(c, lo, hi);
      });
      lo = hi + 1n;
      // writers get at least as long as the step held them (an SQLite step holds the event loop too)
      await new Promise((r) => setTimeout(r, Math.max(1, performance.now() - started)));
    }
  }

  size(): Promise<DbSize> {
    return this.driver.read((c) => this.dialect.size(c));
  }

  async leaseKeys(id: Rev): Promise<Uint8Array[]> {
    const rows = await this.driver.read((c) => c.all("SELECT k FROM kv WHERE lease = ? ORDER BY k", [id]));
    return rows.map((r) => r.k as Uint8Array);
  }

  async leases(): Promise<LeaseRecord[]> {
    return (await this.driver.read((c) => c.all("SELECT id, ttl, expires_at FROM leases ORDER BY id"))).map(rowToLease);
  }

  async lease(id: Rev): Promise<LeaseRecord | undefined> {
    const rows = await this.driver.read((c) => c.all("SELECT id, ttl, expires_at FROM leases WHERE id = ?", [id]));
    return rows[0] ? rowToLease(rows[0]) : undefined;
  }

  async renewLease(id: Rev, now: number): Promise<Rev> {
    return this.driver.write(async (c) => {
      const rows = await c.all("SELECT ttl, expires_at FROM leases WHERE id = ?", [id]);
      const l = rows[0];
      // an expired lease is gone, even before its keys have been deleted
      if (!l || Number(l.expires_at) <= now) return 0n;
      const ttl = l.ttl as bigint;
      await c.run("UPDATE leases SET expires_at = ? WHERE id = ?", [BigInt(now) + ttl * 1000n, id]);
      return ttl;
    });
  }

  async expiredLeases(now: number): Promise<Rev[]> {
    const rows = await this.driver.read((c) => c.all("SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at", [BigInt(now)]));
    return rows.map((r) => r.id as bigint);
  }

  async defragment(): Promise<void> {
    await this.dialect.defragment(this.driver);
  }

  onExternalCommit(notify: () => void): () => void {
    if (this.dialect.pollMs === 0) return () => {};
    const timer = setInterval(notify, this.dialect.pollMs);
    timer.unref?.();
    return () => clearInterval(timer);
  }
}

async function schemaVersion(c: SqlConn, name: string): Promise<number> {
  // in a savepoint, so the transaction stays usable when the table does not exist yet
  try {
    const rows = await c.savepoint((sc) => sc.all("SELECT num FROM meta WHERE name = 'schema_version'"));
    return rows[0] ? Number(rows[0].num) : 0;
  } catch (err) {
    if (isMissingTable(err)) return 0;
    // a table there that this role may not read: creating the schema would only say "already exists"
    if (isPermissionDenied(err)) {
      const role = await c.savepoint((sc) => sc.all("SELECT current_user AS role")).then((r) => String(r[0]?.role), () => "strata connects as");
      throw new Error(
        `${name}: permission denied: the database role ${role} lacks rights on table meta, which holds strata's schema ` +
          `(${(err as Error).message}); grant it SELECT, INSERT, UPDATE and DELETE on strata's tables, or connect as their owner`,
      );
    }
    throw err;
  }
}

/** The meta rows of a new database (`insert`: how they are inserted), and the schema's version. */
async function recordSchema(c: SqlConn, from: number, insert: string, insertEnd = ""): Promise<void> {
  if (from === 0) {
    for (const [name, num] of [["revision", 1n], ["compact_revision", 0n], ["cluster_id", randomId()], ["member_id", randomId()], ["schema_version", 0n]] as const) {
      await c.run(`${insert} meta (name, num) VALUES (?, ?)${insertEnd}`, [name, num]);
    }
  }
  await c.run("UPDATE meta SET num = ? WHERE name = 'schema_version'", [BigInt(SCHEMA_VERSION)]);
}

/** PostgreSQL's undefined_table, MySQL's ER_NO_SUCH_TABLE, SQLite's "no such table" */
function isMissingTable(err: unknown): boolean {
  const e = err as { code?: unknown; errno?: unknown; message?: unknown };
  return e.code === "42P01" || e.errno === 1146 || /no such table/i.test(String(e.message));
}

/** PostgreSQL's insufficient_privilege, MySQL's table access denied */
function isPermissionDenied(err: unknown): boolean {
  const e = err as { code?: unknown; errno?: unknown; message?: unknown };
  return e.code === "42501" || e.errno === 1142 || /permission denied|command denied/i.test(String(e.message));
}

async function readMeta(c: SqlConn): Promise<{ revision: Rev; compactRevision: Rev; clusterId: bigint; memberId: bigint }> {
  return metaOf(await c.all("SELECT name, num FROM meta"));
}

function metaOf(rows: Row[]): { revision: Rev; compactRevision: Rev; clusterId: bigint; memberId: bigint } {
  const m = new Map<string, bigint>();
  for (const r of rows) m.set(r.name as string, r.num as bigint);
  return {
    revision: m.get("revision")!,
    compactRevision: m.get("compact_revision")!,
    clusterId: m.get("cluster_id")!,
    memberId: m.get("member_id")!,
  };
}

/** the previous version's columns of a history read, as rowToEvent reads them */
const PREV_COLUMNS = ", p.create_rev AS p_create_rev, p.rev AS p_mod_rev, p.version AS p_version, p.lease AS p_lease, p.v AS p_v";

/** the WHERE clause selecting a key range on column col */
function bounds(r: KeyRange, col: string): { where: string; params: SqlValue[] } {
  return r.end === undefined
    ? { where: `${col} >= ?`, params: [r.start] }
    : { where: `${col} >= ? AND ${col} < ?`, params: [r.start, r.end] };
}

/** Range reads: the latest state from the current table, older revisions combined with history. */
class RangeReads {
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
      return (await this.c.all(`SELECT COUNT(*) AS n FROM ${this.countKv} WHERE ${where}`, params))[0]!.n as bigint;
    }
    const q = this.atRevision(r, at, false);
    return (await this.c.all(`SELECT COUNT(*) AS n FROM (${q.sql}) live`, q.params))[0]!.n as bigint;
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

/** a KeyValue from a row; `p` prefixes the column names (for the joined previous version) */
function rowToKv(r: Row, p = ""): KeyValue {
  return {
    key: r.k as Uint8Array,
    createRevision: r[`${p}create_rev`] as bigint,
    modRevision: r[`${p}mod_rev`] as bigint,
    version: r[`${p}version`] as bigint,
    lease: r[`${p}lease`] as bigint,
    value: (r[`${p}v`] as Uint8Array | undefined) ?? EMPTY,
  };
}

function rowToLease(r: Row): LeaseRecord {
  return { id: r.id as bigint, ttl: r.ttl as bigint, expiresAt: Number(r.expires_at) };
}

function rowToEvent(r: Row): Event {
  const prevKv = r.p_mod_rev == null ? undefined : rowToKv(r, "p_");
  if (r.deleted === 1n) {
    const rev = r.mod_rev as bigint;
    return { type: DELETE, kv: { key: r.k as Uint8Array, createRevision: 0n, modRevision: rev, version: 0n, lease: 0n, value: EMPTY }, prevKv };
  }
  return { type: PUT, kv: rowToKv(r), prevKv };
}

/** most keys fetched for a batch in one statement */
const FETCH_KEYS = 512;

/**
 * The live version of single keys as a write batch has left them: fetched for the whole
 * batch in one statement (a round trip per transaction saved on a network database),
 * then kept current by the batch's own writes.
 */
class LiveKeys {
  private readonly kvs = new Map<string, KeyValue | undefined>();

  async fetch(c: SqlConn, keys: Uint8Array[]): Promise<void> {
    const unique = [...new Map(keys.map((k) => [keyString(k), k])).values()];
    if (unique.length === 0 || unique.length > FETCH_KEYS) return;
    const rows = await c.all(`SELECT ${KV_COLUMNS} FROM kv WHERE k IN (${unique.map(() => "?").join(", ")})`, unique);
    for (const k of unique) this.kvs.set(keyString(k), undefined);
    for (const r of rows) this.kvs.set(keyString(r.k as Uint8Array), rowToKv(r));
  }

  /** the key's live version (undefined: none), or "unknown" */
  get(key: Uint8Array): KeyValue | undefined | "unknown" {
    const id = keyString(key);
    return this.kvs.has(id) ? this.kvs.get(id) : "unknown";
  }

  set(key: Uint8Array, kv: KeyValue | undefined): void {
    this.kvs.set(keyString(key), kv);
  }
}

class SqlWriteTx implements WriteTx {
  newRevision: Rev;
  newCompactRevision: Rev;
  /** whether this transaction changed anything in the database */
  wrote = false;
  private readonly reads: RangeReads;
  private deletes = 0;

  constructor(
    private readonly backend: string,
    private readonly c: SqlConn,
    private readonly dialect: Dialect,
    readonly revision: Rev,
    readonly compactRevision: Rev,
    private readonly live: LiveKeys,
    /** the index rows of the batch's puts, inserted before it commits (none without --selector-index) */
    private readonly indexRows: IndexRows | undefined,
  ) {
    this.newRevision = revision;
    this.newCompactRevision = compactRevision;
    this.reads = new RangeReads(c, dialect.countKv);
    if (indexRows) {
      // rows indexed earlier in the batch are in the tables before they are looked for
      const lookup = (which: "dependents" | "withUid") => (uid: string) => (indexRows.flush(c), ownedRows(c, which, uid, (r) => rowToKv(r)));
      this.owners = { dependents: lookup("dependents"), withUid: lookup("withUid") };
    }
  }

  readonly owners?: OwnerLookup;

  async range(range: KeyRange, opts?: { revision?: Rev; limit?: number; keysOnly?: boolean }): Promise<KeyValue[]> {
    if (opts?.revision === undefined && isSingleKey(range)) {
      const kv = this.live.get(range.start);
      if (kv !== "unknown") return !kv ? [] : opts?.keysOnly ? [{ ...kv, value: EMPTY }] : [kv];
    }
    return this.reads.range(range, opts?.revision, opts?.limit ?? 0, opts?.keysOnly ?? false);
  }

  count(range: KeyRange, revision?: Rev): Promise<bigint> {
    return this.reads.count(range, revision);
  }

  async put(kv: KeyValue, prev: KeyValue | undefined, sub: number): Promise<void> {
    const max = this.dialect.maxKeyBytes;
    if (max !== undefined && kv.key.length > max) {
      // refused before the database would refuse it with an error that reads as an outage
      throw new EtcdError("InvalidArgument", `strata: key too long for backend ${this.backend}: ${kv.key.length} bytes, at most ${max}`);
    }
    this.wrote = true;
    this.live.set(kv.key, kv);
    this.c.send(
      `INSERT INTO kv_log (rev, sub, k, create_rev, prev_rev, version, lease, deleted, v) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)`,
      [kv.modRevision, BigInt(sub), kv.key, kv.createRevision, prev?.modRevision ?? null, kv.version, kv.lease, kv.value],
    );
    this.indexRows?.add(kv.modRevision, kv.key, kv.value);
    this.c.send(this.dialect.upsertKv, [kv.modRevision, BigInt(sub)]);
  }

  async delete(prev: KeyValue, rev: Rev, sub: number): Promise<void> {
    this.wrote = true;
    this.live.set(prev.key, undefined);
    this.c.send(
      `INSERT INTO kv_log (rev, sub, k, create_rev, prev_rev, version, lease, deleted, v) VALUES (?, ?, ?, 0, ?, 0, 0, 1, ?)`,
      [rev, BigInt(sub), prev.key, prev.modRevision, EMPTY],
    );
    this.c.send("DELETE FROM kv WHERE k = ?", [prev.key]);
    if (++this.deletes % DELETES_PER_TURN === 0) await new Promise((r) => setImmediate(r));
  }

  async forget(key: Uint8Array): Promise<void> {
    this.wrote = true;
    this.live.set(key, undefined);
    // rows indexed earlier in the batch are in the tables before they are looked for
    this.indexRows?.flush(this.c);
    await forgetIndex(this.c, key);
    await this.c.run("DELETE FROM kv_log WHERE k = ?", [key]);
    await this.c.run("DELETE FROM kv WHERE k = ?", [key]);
  }

  async leaseExists(id: Rev): Promise<boolean> {
    return (await this.c.all("SELECT 1 AS x FROM leases WHERE id = ?", [id])).length > 0;
  }

  async leaseExpired(id: Rev, now: number): Promise<boolean> {
    const rows = await this.c.all("SELECT expires_at FROM leases WHERE id = ?", [id]);
    return rows.length > 0 && Number(rows[0]!.expires_at) <= now;
  }

  async leaseInsert(lease: LeaseRecord): Promise<void> {
    this.wrote = true;
    this.c.send("INSERT INTO leases (id, ttl, expires_at) VALUES (?, ?, ?)", [lease.id, lease.ttl, BigInt(lease.expiresAt)]);
  }

  async leaseDelete(id: Rev): Promise<void> {
    this.wrote = true;
    this.c.send("DELETE FROM leases WHERE id = ?", [id]);
  }

  async leaseKeys(id: Rev): Promise<KeyValue[]> {
    return (await this.c.all(`SELECT ${KV_COLUMNS} FROM kv WHERE lease = ? ORDER BY k`, [id])).map((r) => rowToKv(r));
  }

  /** the batch stores the final revisions once, at its end */
  async setRevision(rev: Rev): Promise<void> {
    this.newRevision = rev;
  }

  async setCompactRevision(rev: Rev): Promise<void> {
    this.newCompactRevision = rev;
  }
}

function randomId(): bigint {
  const b = new BigUint64Array(1);
  crypto.getRandomValues(b);
  // positive as a signed int64, so every SQL engine stores it unchanged
  return b[0]! & 0x7fffffffffffffffn;
}
