// The embedded default backend: one SQLite file in WAL mode. A writer connection runs
// group-committed batches; a second connection serves reads from committed snapshots,
// so a read never sees a batch that is still being written.
import { setImmediate } from "node:timers";
import type { Backend, BackendState, DbSize, WriteResult, WriteTx } from "../backend.ts";
import { checkRevision } from "../../engine/revisions.ts";
import type { Event, KeyRange, KeyValue, LeaseRecord, RangeQuery, RangeResult, Rev } from "../../engine/types.ts";
import { DELETE, PUT } from "../../engine/types.ts";
import { openSqlite, type Row, type SqliteDatabase, type SqlValue, type Statement } from "./sqlite-driver.ts";
import { SCHEMA_VERSION, schemaStatements } from "./schema.ts";

const EMPTY = new Uint8Array(0);
/** history rows removed per compaction step, so writers are never held up for long */
const COMPACT_STEP_REVISIONS = 2000n;

export class SqliteBackend implements Backend {
  readonly name: string;
  private writer!: SqliteDatabase;
  private reader!: SqliteDatabase;
  private lock: SqliteDatabase | undefined;
  private readonly cache = new Map<SqliteDatabase, Map<string, Statement>>();

  constructor(private readonly path: string) {
    this.name = `sqlite://${path}`;
  }

  private sql(db: SqliteDatabase, text: string): Statement {
    let stmts = this.cache.get(db);
    if (!stmts) this.cache.set(db, (stmts = new Map()));
    let s = stmts.get(text);
    if (!s) stmts.set(text, (s = db.prepare(text)));
    return s;
  }

  async open(): Promise<BackendState> {
    await this.lockExclusively();
    this.writer = await openSqlite(this.path);
    this.writer.exec("PRAGMA journal_mode = WAL");
    // FULL: the WAL is fsynced at every commit, so an acknowledged write survives power loss.
    this.writer.exec("PRAGMA synchronous = FULL");
    this.writer.exec("PRAGMA busy_timeout = 10000");
    const version = this.schemaVersion();
    if (version > SCHEMA_VERSION) {
      throw new Error(
        `${this.name}: database schema version ${version} is newer than this strata (${SCHEMA_VERSION}); upgrade strata`,
      );
    }
    if (version < SCHEMA_VERSION) this.migrate(version);
    this.reader = await openSqlite(this.path);
    this.reader.exec("PRAGMA busy_timeout = 10000");
    this.reader.exec("PRAGMA query_only = 1");
    const meta = this.meta(this.writer);
    const leases = this.sql(this.writer, "SELECT id, ttl FROM leases ORDER BY id").all()
      .map((r) => ({ id: r.id as bigint, ttl: r.ttl as bigint }));
    return { ...meta, leases };
  }

  /**
   * One strata process per SQLite file: revisions and watch events live in the process,
   * so a second one would serve stale answers. The lock is an exclusive transaction held
   * open on a small side file; the operating system releases it when the process dies.
   */
  private async lockExclusively(): Promise<void> {
    if (this.path === ":memory:") return;
    this.lock = await openSqlite(`${this.path}.lock`);
    try {
      this.lock.exec("PRAGMA busy_timeout = 0");
      this.lock.exec("BEGIN EXCLUSIVE");
    } catch {
      this.lock.close();
      this.lock = undefined;
      throw new Error(`${this.name} is in use by another strata process (its lock file ${this.path}.lock is held)`);
    }
  }

  private schemaVersion(): number {
    const hasMeta = this.writer.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get();
    if (!hasMeta) return 0;
    const row = this.writer.prepare("SELECT value FROM meta WHERE name = 'schema_version'").get();
    return row ? Number(row.value) : 0;
  }

  private migrate(from: number): void {
    this.writer.exec("BEGIN IMMEDIATE");
    try {
      for (const stmt of schemaStatements(from, "sqlite")) this.writer.exec(stmt);
      if (from === 0) {
        const ins = this.writer.prepare("INSERT INTO meta (name, value) VALUES (?, ?)");
        ins.run("revision", 1n); // etcd starts at revision 1 with an empty keyspace
        ins.run("compact_revision", 0n);
        ins.run("cluster_id", randomId());
        ins.run("member_id", randomId());
        ins.run("schema_version", 0n);
      }
      this.writer.prepare("UPDATE meta SET value = ? WHERE name = 'schema_version'").run(BigInt(SCHEMA_VERSION));
      this.writer.exec("COMMIT");
    } catch (err) {
      this.writer.exec("ROLLBACK");
      throw err;
    }
  }

  private meta(db: SqliteDatabase): { revision: Rev; compactRevision: Rev; clusterId: bigint; memberId: bigint } {
    const m = new Map<string, bigint>();
    for (const r of this.sql(db, "SELECT name, value FROM meta").all()) m.set(r.name as string, r.value as bigint);
    return {
      revision: m.get("revision")!,
      compactRevision: m.get("compact_revision")!,
      clusterId: m.get("cluster_id")!,
      memberId: m.get("member_id")!,
    };
  }

  async close(): Promise<void> {
    this.reader?.close();
    this.writer?.close();
    this.lock?.close();
    this.lock = undefined;
  }

  async revisions(): Promise<{ revision: Rev; compactRevision: Rev }> {
    const { revision, compactRevision } = this.meta(this.reader);
    return { revision, compactRevision };
  }

  private readTxn<T>(fn: () => T): T {
    this.reader.exec("BEGIN");
    try {
      return fn();
    } finally {
      this.reader.exec("COMMIT");
    }
  }

  async range(q: RangeQuery): Promise<RangeResult> {
    return this.readTxn(() => {
      const { revision, compactRevision } = this.meta(this.reader);
      const at = checkRevision(q.revision, revision, compactRevision);
      const reads = new RangeReads(this, this.reader);
      const historic = at === revision ? undefined : at;
      const count = reads.count(q.range, historic);
      const kvs = q.countOnly ? [] : reads.range(q.range, historic, q.limit, q.keysOnly);
      return { kvs, count, revision };
    });
  }

  async write<T>(txns: Array<(tx: WriteTx) => Promise<T>>): Promise<WriteResult<T>[]> {
    const w = this.writer;
    w.exec("BEGIN IMMEDIATE");
    const results: WriteResult<T>[] = [];
    try {
      let { revision, compactRevision } = this.meta(w);
      for (const fn of txns) {
        w.exec("SAVEPOINT client_txn");
        const tx = new SqliteWriteTx(this, w, revision, compactRevision);
        try {
          const value = await fn(tx);
          w.exec("RELEASE client_txn");
          revision = tx.newRevision;
          compactRevision = tx.newCompactRevision;
          results.push({ ok: true, value });
        } catch (error) {
          w.exec("ROLLBACK TO client_txn");
          w.exec("RELEASE client_txn");
          results.push({ ok: false, error });
        }
      }
      w.exec("COMMIT");
    } catch (err) {
      try {
        w.exec("ROLLBACK");
      } catch {
        // the failed COMMIT may already have rolled back
      }
      throw err;
    }
    return results;
  }

  async events(from: Rev, to: Rev, limit: number): Promise<Event[]> {
    const last = from + BigInt(limit) - 1n < to ? from + BigInt(limit) - 1n : to;
    const rows = this.sql(
      this.reader,
      `SELECT l.rev, l.key, l.create_rev, l.version, l.lease, l.deleted, l.value,
              p.create_rev AS p_create_rev, p.rev AS p_rev, p.version AS p_version, p.lease AS p_lease, p.value AS p_value
         FROM kv_log l LEFT JOIN kv_log p ON l.prev_rev != 0 AND p.key = l.key AND p.rev = l.prev_rev
        WHERE l.rev >= ? AND l.rev <= ? ORDER BY l.rev, l.sub`,
    ).all(from, last);
    return rows.map((r) => {
      const key = r.key as Uint8Array;
      const prevKv = r.p_rev == null ? undefined : {
        key,
        createRevision: r.p_create_rev as bigint,
        modRevision: r.p_rev as bigint,
        version: r.p_version as bigint,
        lease: r.p_lease as bigint,
        value: (r.p_value as Uint8Array) ?? EMPTY,
      };
      if (r.deleted === 1n) {
        return {
          type: DELETE,
          kv: { key, createRevision: 0n, modRevision: r.rev as bigint, version: 0n, lease: 0n, value: EMPTY },
          prevKv,
        };
      }
      return {
        type: PUT,
        kv: {
          key,
          createRevision: r.create_rev as bigint,
          modRevision: r.rev as bigint,
          version: r.version as bigint,
          lease: r.lease as bigint,
          value: (r.value as Uint8Array) ?? EMPTY,
        },
        prevKv,
      };
    });
  }

  async compact(rev: Rev): Promise<void> {
    const w = this.writer;
    const low = this.sql(w, "SELECT MIN(rev) AS rev FROM kv_log").get()?.rev as bigint | null;
    if (low == null) return;
    // A row goes when it is a tombstone or a newer row of its key at or below rev exists.
    const step = this.sql(
      w,
      `DELETE FROM kv_log WHERE rev >= ? AND rev <= ? AND (deleted = 1 OR EXISTS
         (SELECT 1 FROM kv_log n WHERE n.key = kv_log.key AND n.rev > kv_log.rev AND n.rev <= ?))`,
    );
    for (let lo = low; lo <= rev; lo += COMPACT_STEP_REVISIONS) {
      const hi = lo + COMPACT_STEP_REVISIONS - 1n < rev ? lo + COMPACT_STEP_REVISIONS - 1n : rev;
      w.exec("BEGIN IMMEDIATE");
      try {
        step.run(lo, hi, rev);
        w.exec("COMMIT");
      } catch (err) {
        w.exec("ROLLBACK");
        throw err;
      }
      // let requests in between steps
      await new Promise((r) => setImmediate(r));
    }
  }

  async size(): Promise<DbSize> {
    const page = this.sql(this.reader, "PRAGMA page_size").get()!.page_size as bigint;
    const count = this.sql(this.reader, "PRAGMA page_count").get()!.page_count as bigint;
    const free = this.sql(this.reader, "PRAGMA freelist_count").get()!.freelist_count as bigint;
    return { size: page * count, inUse: page * (count - free) };
  }

  async leaseKeys(id: Rev): Promise<Uint8Array[]> {
    return this.sql(this.reader, "SELECT key FROM kv WHERE lease = ? ORDER BY key").all(id).map((r) => r.key as Uint8Array);
  }

  async defragment(): Promise<void> {
    this.writer.exec("VACUUM");
    this.writer.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }

  /** prepared statement on a connection, for the helper classes below */
  statement(db: SqliteDatabase, text: string): Statement {
    return this.sql(db, text);
  }
}

/** Range reads, at the latest revision from the current table, at older ones combined with history. */
class RangeReads {
  constructor(
    private readonly b: SqliteBackend,
    private readonly db: SqliteDatabase,
  ) {}

  private bounds(r: KeyRange): { where: string; params: SqlValue[] } {
    return r.end === undefined ? { where: "key >= ?", params: [r.start] } : {
      where: "key >= ? AND key < ?",
      params: [r.start, r.end],
    };
  }

  /**
   * Rows live at revision `at`: current rows unchanged since, plus for keys changed
   * after `at` their newest history row at or below it (when that is not a tombstone).
   */
  private atRevisionSql(r: KeyRange, columns: string, histColumns: string): { sql: string; params: SqlValue[] } {
    const { where, params } = this.bounds(r);
    const lwhere = where.replaceAll("key", "c.key");
    return {
      sql: `SELECT ${columns} FROM kv WHERE ${where} AND mod_rev <= ?
            UNION ALL
            SELECT ${histColumns} FROM
              (SELECT DISTINCT key FROM kv_log c WHERE ${lwhere} AND c.rev > ?) c
              JOIN kv_log l ON l.key = c.key
               AND l.rev = (SELECT MAX(rev) FROM kv_log m WHERE m.key = c.key AND m.rev <= ?)
             WHERE l.deleted = 0`,
      params: [...params, "AT", ...params, "AT", "AT"],
    };
  }

  /** `at` undefined: the latest state */
  count(r: KeyRange, at: Rev | undefined): bigint {
    if (at === undefined) {
      const { where, params } = this.bounds(r);
      return this.b.statement(this.db, `SELECT COUNT(*) AS n FROM kv WHERE ${where}`).get(...params)!.n as bigint;
    }
    const q = this.atRevisionSql(r, "key", "l.key");
    const params = q.params.map((p) => (p === "AT" ? at : p));
    return this.b.statement(this.db, `SELECT COUNT(*) AS n FROM (${q.sql})`).get(...params)!.n as bigint;
  }

  range(r: KeyRange, at: Rev | undefined, limit: number, keysOnly: boolean): KeyValue[] {
    const value = keysOnly ? "X'' AS value" : "value";
    const lim = limit > 0 ? BigInt(limit) : -1n;
    let rows: Row[];
    if (at === undefined) {
      const { where, params } = this.bounds(r);
      rows = this.b.statement(
        this.db,
        `SELECT key, create_rev, mod_rev, version, lease, ${value} FROM kv WHERE ${where} ORDER BY key LIMIT ?`,
      ).all(...params, lim);
    } else {
      const q = this.atRevisionSql(
        r,
        `key, create_rev, mod_rev, version, lease, ${value}`,
        `l.key, l.create_rev, l.rev AS mod_rev, l.version, l.lease, ${keysOnly ? "X'' AS value" : "l.value"}`,
      );
      const params = q.params.map((p) => (p === "AT" ? at : p));
      rows = this.b.statement(this.db, `${q.sql} ORDER BY 1 LIMIT ?`).all(...params, lim);
    }
    return rows.map(rowToKv);
  }
}

function rowToKv(r: Row): KeyValue {
  return {
    key: r.key as Uint8Array,
    createRevision: r.create_rev as bigint,
    modRevision: r.mod_rev as bigint,
    version: r.version as bigint,
    lease: r.lease as bigint,
    value: (r.value as Uint8Array) ?? EMPTY,
  };
}

class SqliteWriteTx implements WriteTx {
  newRevision: Rev;
  newCompactRevision: Rev;
  private readonly reads: RangeReads;

  constructor(
    private readonly b: SqliteBackend,
    private readonly db: SqliteDatabase,
    readonly revision: Rev,
    readonly compactRevision: Rev,
  ) {
    this.newRevision = revision;
    this.newCompactRevision = compactRevision;
    this.reads = new RangeReads(b, db);
  }

  private run(text: string, ...params: SqlValue[]): void {
    this.b.statement(this.db, text).run(...params);
  }

  async range(range: KeyRange, opts?: { revision?: Rev; limit?: number; keysOnly?: boolean }): Promise<KeyValue[]> {
    return this.reads.range(range, opts?.revision, opts?.limit ?? 0, opts?.keysOnly ?? false);
  }

  async count(range: KeyRange, revision?: Rev): Promise<bigint> {
    return this.reads.count(range, revision);
  }

  async put(kv: KeyValue, prev: KeyValue | undefined, sub: number): Promise<void> {
    this.run(
      `INSERT INTO kv_log (rev, sub, key, create_rev, prev_rev, version, lease, deleted, value)
       VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)`,
      kv.modRevision, BigInt(sub), kv.key, kv.createRevision, prev?.modRevision ?? 0n, kv.version, kv.lease, kv.value,
    );
    this.run(
      `INSERT INTO kv (key, create_rev, mod_rev, version, lease, value) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET create_rev = excluded.create_rev, mod_rev = excluded.mod_rev,
         version = excluded.version, lease = excluded.lease, value = excluded.value`,
      kv.key, kv.createRevision, kv.modRevision, kv.version, kv.lease, kv.value,
    );
  }

  async delete(prev: KeyValue, rev: Rev, sub: number): Promise<void> {
    this.run(
      `INSERT INTO kv_log (rev, sub, key, create_rev, prev_rev, version, lease, deleted, value)
       VALUES (?, ?, ?, 0, ?, 0, 0, 1, X'')`,
      rev, BigInt(sub), prev.key, prev.modRevision,
    );
    this.run("DELETE FROM kv WHERE key = ?", prev.key);
  }

  async leaseExists(id: Rev): Promise<boolean> {
    return this.b.statement(this.db, "SELECT 1 AS x FROM leases WHERE id = ?").get(id) !== undefined;
  }

  async leaseInsert(lease: LeaseRecord): Promise<void> {
    this.run("INSERT INTO leases (id, ttl) VALUES (?, ?)", lease.id, lease.ttl);
  }

  async leaseDelete(id: Rev): Promise<void> {
    this.run("DELETE FROM leases WHERE id = ?", id);
  }

  async leaseKeys(id: Rev): Promise<KeyValue[]> {
    return this.b.statement(
      this.db,
      "SELECT key, create_rev, mod_rev, version, lease, value FROM kv WHERE lease = ? ORDER BY key",
    ).all(id).map(rowToKv);
  }

  async setRevision(rev: Rev): Promise<void> {
    this.run("UPDATE meta SET value = ? WHERE name = 'revision'", rev);
    this.newRevision = rev;
  }

  async setCompactRevision(rev: Rev): Promise<void> {
    this.run("UPDATE meta SET value = ? WHERE name = 'compact_revision'", rev);
    this.newCompactRevision = rev;
  }
}

function randomId(): bigint {
  const b = new BigUint64Array(1);
  crypto.getRandomValues(b);
  // keep IDs positive as signed int64 so every SQL engine stores them unchanged
  return b[0]! & 0x7fffffffffffffffn;
}

