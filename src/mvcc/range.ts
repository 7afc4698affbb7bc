// etcd's Range post-processing, in one place: what to read for a request (rangeQuery)
// and what to answer from what was read (finishRange): revision filters, sort, limit,
// keys-only, count-only. Readers below (a store, or several merged by the router) answer
// raw reads; the keyspace finishes them once.
import type { RangeRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { compareBytes, toKeyRange } from "./keyrange.ts";
import type { RangeOut } from "./responses.ts";
import type { KeyValue, RangeQuery, RangeResult } from "./types.ts";

const SORT_NONE = 0, SORT_ASCEND = 1, SORT_DESCEND = 2;
/** a limit this large is none: no response can hold 2^31 keys */
const NO_LIMIT = 2n ** 31n;
const TARGET_KEY = 0, TARGET_VERSION = 1, TARGET_CREATE = 2, TARGET_MOD = 3, TARGET_VALUE = 4;

/** What to read for a Range: everything when results are filtered or sorted afterwards. */
export function rangeFetch(r: RangeRequest): { limit: number; keysOnly: boolean } {
  const filtered = r.minModRevision !== 0n || r.maxModRevision !== 0n || r.minCreateRevision !== 0n ||
    r.maxCreateRevision !== 0n;
  // clients send MaxInt64 for "no limit"; no response can hold 2^31 keys, so any limit
  // that large is none (and never reaches a database as an out-of-range number)
  let limit = r.sortOrder !== SORT_NONE || filtered || r.limit >= NO_LIMIT ? 0 : Number(r.limit);
  if (limit > 0) limit += 1; // one extra tells whether there is more
  // values are needed to sort by value; they are dropped afterwards
  return { limit: limit > 0 ? limit : 0, keysOnly: r.keysOnly && r.sortTarget !== TARGET_VALUE };
}

/**
 * Whether finishRange would only cut the results to the limit: no revision filters, no
 * sort but by key ascending, values kept or not read. Such a read's key-values can be
 * encoded where they are read.
 */
function isPlainRange(r: RangeRequest): boolean {
  const filtered = r.minModRevision !== 0n || r.maxModRevision !== 0n || r.minCreateRevision !== 0n ||
    r.maxCreateRevision !== 0n;
  return !filtered && !r.countOnly && r.sortTarget === TARGET_KEY && (r.sortOrder === SORT_NONE || r.sortOrder === SORT_ASCEND);
}

/**
 * The read a Range needs: its keys at its revision, as many as the answer can use (one
 * more than the limit tells whether there are more). `encodedKvs`: the caller takes the
 * key-values encoded (keyspace/contract.ts RangeOptions says why), so the reader may
 * answer so when the request needs nothing done to them but the cut.
 */
export function rangeQuery(r: RangeRequest, { encodedKvs = false }: { encodedKvs?: boolean } = {}): RangeQuery {
  const keep = r.limit > 0n && r.limit < NO_LIMIT ? Number(r.limit) : Number.MAX_SAFE_INTEGER;
  return {
    range: toKeyRange(r.key, r.rangeEnd),
    revision: r.revision,
    countOnly: r.countOnly,
    ...rangeFetch(r),
    encode: encodedKvs && isPlainRange(r) ? { keep } : undefined,
  };
}

/**
 * etcd's post-processing of a range, from what was read for it: prune by revision filters,
 * sort, truncate, strip values (key-values read already encoded are answered as they are).
 */
export function finishRange(r: RangeRequest, read: RangeResult): RangeOut {
  const { count, revision } = read;
  if (read.encoded) {
    const e = read.encoded;
    return { header: { revision }, kvs: [], encodedKvs: e.bytes, more: e.more, count };
  }
  let kvs = read.kvs;
  if (r.maxModRevision !== 0n) kvs = kvs.filter((kv) => kv.modRevision <= r.maxModRevision);
  if (r.minModRevision !== 0n) kvs = kvs.filter((kv) => kv.modRevision >= r.minModRevision);
  if (r.maxCreateRevision !== 0n) kvs = kvs.filter((kv) => kv.createRevision <= r.maxCreateRevision);
  if (r.minCreateRevision !== 0n) kvs = kvs.filter((kv) => kv.createRevision >= r.minCreateRevision);

  let order = r.sortOrder;
  // results come in ascending key order: sort by key ascending is a no-op, and any
  // other target without an order defaults to ascending
  if (r.sortTarget !== TARGET_KEY && order === SORT_NONE) order = SORT_ASCEND;
  else if (r.sortTarget === TARGET_KEY && order === SORT_ASCEND) order = SORT_NONE;
  if (order !== SORT_NONE) {
    const cmp = sortComparator(r.sortTarget);
    kvs = [...kvs].sort(order === SORT_DESCEND ? (a, b) => cmp(b, a) : cmp);
  }
  let more = false;
  if (r.limit > 0n && r.limit < NO_LIMIT && kvs.length > Number(r.limit)) {
    kvs = kvs.slice(0, Number(r.limit));
    more = true;
  }
  if (r.keysOnly) kvs = kvs.map((kv) => (kv.value.length ? { ...kv, value: new Uint8Array(0) } : kv));
  return { header: { revision }, kvs: r.countOnly ? [] : kvs, more, count };
}

function sortComparator(target: number): (a: KeyValue, b: KeyValue) => number {
  const num = (f: (kv: KeyValue) => bigint) => (a: KeyValue, b: KeyValue) => (f(a) < f(b) ? -1 : f(a) > f(b) ? 1 : 0);
  switch (target) {
    case TARGET_VERSION:
      return num((kv) => kv.version);
    case TARGET_CREATE:
      return num((kv) => kv.createRevision);
    case TARGET_MOD:
      return num((kv) => kv.modRevision);
    case TARGET_VALUE:
      return (a, b) => compareBytes(a.value, b.value);
    default:
      return (a, b) => compareBytes(a.key, b.key);
  }
}
