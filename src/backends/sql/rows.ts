// Rows of strata's SQL tables as mvcc's types, and the SQL every view builds its reads
// from: one reading of each table shared by the read, write, history and lease views.
import type { Event, KeyRange, KeyValue, LeaseRecord, Rev } from "../../mvcc/types.ts";
import { DELETE, PUT } from "../../mvcc/types.ts";
import type { Row, SqlConn, SqlValue } from "./driver.ts";

export const EMPTY = new Uint8Array(0);

export interface Meta {
  revision: Rev;
  compactRevision: Rev;
  clusterId: bigint;
  memberId: bigint;
}

export async function readMeta(c: SqlConn): Promise<Meta> {
  return metaOf(await c.all("SELECT name, num FROM meta"));
}

export function metaOf(rows: Row[]): Meta {
  const m = new Map<string, bigint>();
  for (const r of rows) m.set(r.name as string, r.num as bigint);
  const num = (name: string) => m.get(name) as bigint;
  return { revision: num("revision"), compactRevision: num("compact_revision"), clusterId: num("cluster_id"), memberId: num("member_id") };
}

/** the previous version's columns of a history read, as rowToEvent reads them */
export const PREV_COLUMNS = ", p.create_rev AS p_create_rev, p.rev AS p_mod_rev, p.version AS p_version, p.lease AS p_lease, p.v AS p_v";

/** the WHERE clause selecting a key range on column col */
export function bounds(r: KeyRange, col: string): { where: string; params: SqlValue[] } {
  return r.end === undefined
    ? { where: `${col} >= ?`, params: [r.start] }
    : { where: `${col} >= ? AND ${col} < ?`, params: [r.start, r.end] };
}

/** a KeyValue from a row; `p` prefixes the column names (for the joined previous version) */
export function rowToKv(r: Row, p = ""): KeyValue {
  return {
    key: r.k as Uint8Array,
    createRevision: r[`${p}create_rev`] as bigint,
    modRevision: r[`${p}mod_rev`] as bigint,
    version: r[`${p}version`] as bigint,
    lease: r[`${p}lease`] as bigint,
    value: (r[`${p}v`] as Uint8Array | undefined) ?? EMPTY,
  };
}

export function rowToLease(r: Row): LeaseRecord {
  return { id: r.id as bigint, ttl: r.ttl as bigint, expiresAt: Number(r.expires_at) };
}

export function rowToEvent(r: Row): Event {
  const prevKv = r.p_mod_rev == null ? undefined : rowToKv(r, "p_");
  if (r.deleted === 1n) {
    const rev = r.mod_rev as bigint;
    return { type: DELETE, kv: { key: r.k as Uint8Array, createRevision: 0n, modRevision: rev, version: 0n, lease: 0n, value: EMPTY }, prevKv };
  }
  return { type: PUT, kv: rowToKv(r), prevKv };
}

/** a random id, positive as a signed int64 so every SQL engine stores it unchanged */
export function randomId(): bigint {
  const b = new BigUint64Array(1);
  crypto.getRandomValues(b);
  return (b[0] ?? 0n) & 0x7fffffffffffffffn;
}

/** the row of a statement that always returns one (an aggregate, a SELECT without FROM) */
export function oneRow(rows: Row[]): Row {
  const [row] = rows;
  if (!row) throw new Error("strata: a statement that returns one row returned none");
  return row;
}
