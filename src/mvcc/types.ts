// The etcd data model as mvcc and the backends see it. Field names match the
// generated protobuf types (minus $typeName) so results pass straight to the api layer.
import type { Selection } from "../selectors/index.ts";

/** A revision, a version or a lease ID: etcd's int64s, kept as bigint end to end. */
export type Rev = bigint;

export interface KeyValue {
  key: Uint8Array;
  createRevision: Rev;
  modRevision: Rev;
  version: Rev;
  value: Uint8Array;
  lease: Rev;
}

export const PUT = 0;
export const DELETE = 1;
export type EventType = typeof PUT | typeof DELETE;

export interface Event {
  type: EventType;
  kv: KeyValue;
  prevKv?: KeyValue;
  /** its place among its revision's changes (etcd's sub revision), when asked for (EventsOptions.subs) */
  sub?: bigint;
}

/**
 * A key range as etcd defines it, normalised: every key k with start <= k < end;
 * end undefined means no upper bound.
 */
export interface KeyRange {
  start: Uint8Array;
  end: Uint8Array | undefined;
}

export interface RangeQuery {
  range: KeyRange;
  /** 0 = latest */
  revision: Rev;
  /** 0 = no limit */
  limit: number;
  countOnly: boolean;
  keysOnly: boolean;
  /** the range's count at a revision, if known: a read at that revision need not count */
  knownCount?: { revision: Rev; count: bigint };
  /**
   * The backend may answer `encoded` instead of `kvs`: the first `keep` key-values read
   * (a further one only tells that there are more), encoded. Only for reads whose results
   * need no sorting or filtering afterwards; asked when the api writes the response bytes
   * itself (keyspace/contract.ts RangeOptions.encodedKvs says why).
   */
  encode?: { keep: number };
  /**
   * Label/field selectors to apply where the keys are stored (storage-side filtering).
   * A reader that applies them answers `selected`; one that cannot answers the plain
   * range — or, when `exactOnly`, no keys and no `selected`, without reading them.
   */
  select?: { selection: Selection; exactOnly: boolean };
  /** the count is not wanted (a page of a superset): the reader need not read it, and answers 0 */
  uncounted?: boolean;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** number of keys in the range at the revision, regardless of limit */
  count: bigint;
  /** the store's current revision when the read was made */
  revision: Rev;
  encoded?: EncodedKvs;
  /**
   * How the query's selection was applied: "exact" — only the keys it keeps, counted by
   * `count`; "superset" — keys it may keep (checked by the caller; `count` means nothing).
   */
  selected?: "exact" | "superset";
}

/** A read's key-values as RangeResponse's `kvs` field (mvcc/kv-encoding.ts). */
export interface EncodedKvs {
  bytes: Uint8Array;
  /** key-values in bytes */
  count: number;
  /** whether the read found more than it kept */
  more: boolean;
  /** the last key in bytes (where the next page starts) */
  lastKey: Uint8Array | undefined;
}

export interface LeaseRecord {
  id: Rev;
  ttl: Rev;
  /** wall-clock deadline, milliseconds since the epoch */
  expiresAt: number;
}
