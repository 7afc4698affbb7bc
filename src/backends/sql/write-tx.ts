// One client transaction inside a SQL write batch (writes.ts): its reads see the batch's
// writes before it; its writes are sent without waiting for their answers.
import { setImmediate } from "node:timers";
import type { OwnerLookup, WriteTx } from "../../mvcc/backend.ts";
import { EtcdError } from "../../mvcc/errors.ts";
import { isSingleKey, keyString } from "../../mvcc/keyrange.ts";
import type { KeyRange, KeyValue, LeaseRecord, Rev } from "../../mvcc/types.ts";
import { type Dialect, KV_COLUMNS } from "./dialect.ts";
import type { SqlConn } from "./driver.ts";
import { RangeReads } from "./reads.ts";
import { EMPTY, rowToKv } from "./rows.ts";
import { forgetIndex, type IndexRows, ownedRows } from "./selector-index.ts";

/**
 * keys a write transaction deletes between turns of the event loop: an embedded SQLite
 * runs each statement on the event loop, and a DeleteRange of 190,000 keys (etcdctl check
 * perf's last step) froze every other client for seconds. The transaction stays open over
 * the pauses (writes wait their turn anyway; reads see the last commit), so it is atomic.
 */
const DELETES_PER_TURN = 1000;
/** most keys fetched for a batch in one statement */
const FETCH_KEYS = 512;

/**
 * The live version of single keys as a write batch has left them: fetched for the whole
 * batch in one statement (a round trip per transaction saved on a network database),
 * then kept current by the batch's own writes.
 */
export class LiveKeys {
  private readonly kvs = new Map<string, KeyValue | undefined>();

  async fetch(c: SqlConn, keys: Uint8Array[]): Promise<void> {
    const byId = new Map<string, Uint8Array>();
    for (const k of keys) byId.set(keyString(k), k);
    if (byId.size === 0 || byId.size > FETCH_KEYS) return;
    const unique = [...byId.values()];
    const rows = await c.all(`SELECT ${KV_COLUMNS} FROM kv WHERE k IN (${unique.map(() => "?").join(", ")})`, unique);
    for (const id of byId.keys()) this.kvs.set(id, undefined);
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

export class SqlWriteTx implements WriteTx {
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
      const lookup = (which: "dependents" | "withUid") => (uid: string) => (indexRows.flush(c), ownedRows(c, dialect, which, uid, (r) => rowToKv(r)));
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
    if (this.dialect.upsertKvValues) this.c.send(this.dialect.upsertKvValues, [kv.key, kv.createRevision, kv.modRevision, kv.version, kv.lease, kv.value]);
    else this.c.send(this.dialect.upsertKv, [kv.modRevision, BigInt(sub)]);
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
    const [lease] = await this.c.all("SELECT expires_at FROM leases WHERE id = ?", [id]);
    return lease !== undefined && Number(lease.expires_at) <= now;
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
