// etcd's key range encoding: an empty range_end is the single key, "\0" means every key
// >= key, anything else is the half-open interval [key, range_end).
import type { TxnRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { KeyRange } from "./types.ts";


export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

/** A key as a string, for maps and sets: latin1 is one character per byte, so prefixes compare as bytes. */
export function keyString(key: Uint8Array): string {
  return latin1(key);
}

/**
 * Bytes as latin1 text. Buffer's latin1Slice takes any Uint8Array in Bun: 4× faster than a
 * Buffer over the key's ArrayBuffer (whose `buffer` JavaScriptCore makes on first use), and
 * a txn turns keys into strings several times. Where it is missing or reads differently
 * (checked once, on every byte value), the Buffer view.
 */
const latin1: (key: Uint8Array) => string = (() => {
  const viaBuffer = (key: Uint8Array) => Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("latin1");
  const slice = (Buffer.prototype as { latin1Slice?: (this: Uint8Array, start: number, end: number) => string }).latin1Slice;
  if (typeof slice !== "function") return viaBuffer;
  const every = Uint8Array.from({ length: 258 }, (_, i) => i % 256).subarray(1);
  try {
    if (slice.call(every, 0, every.length) !== viaBuffer(every)) return viaBuffer;
  } catch {
    return viaBuffer;
  }
  return (key) => slice.call(key, 0, key.length);
})();

/**
 * A key range as a string, for maps: equal ranges give equal strings, different ones
 * different strings (the separator is no byte, so no key can hold it).
 */
export function rangeString(r: KeyRange): string {
  return `${keyString(r.start)}\u0100${r.end === undefined ? "" : keyString(r.end)}`;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The smallest key greater than `key` and all keys it prefixes would be key+"\0"; this is key+"\0". */
export function successor(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(key.length + 1);
  out.set(key);
  return out;
}

/** The range_end covering every key that starts with key; undefined when that is every key from it on. */
export function prefixEnd(key: Uint8Array): Uint8Array | undefined {
  for (let i = key.length - 1; i >= 0; i--) {
    if (key[i]! < 0xff) {
      const out = Uint8Array.from(key.subarray(0, i + 1));
      out[i]! += 1;
      return out;
    }
  }
  return undefined;
}

export function toKeyRange(key: Uint8Array, rangeEnd: Uint8Array): KeyRange {
  if (rangeEnd.length === 0) return { start: key, end: successor(key) };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start: key, end: undefined };
  return { start: key, end: rangeEnd };
}

/** whether the range holds exactly one key (key to key+"\0") */
export function isSingleKey(r: KeyRange): boolean {
  const { start, end } = r;
  if (end === undefined || end.length !== start.length + 1 || end[start.length] !== 0) return false;
  // compared in place: a view of end per call cost more than the comparison (every request asks)
  for (let i = 0; i < start.length; i++) if (start[i] !== end[i]) return false;
  return true;
}

export function isEmptyRange(r: KeyRange): boolean {
  return r.end !== undefined && compareBytes(r.start, r.end) >= 0;
}

export function inRange(r: KeyRange, key: Uint8Array): boolean {
  return compareBytes(key, r.start) >= 0 && (r.end === undefined || compareBytes(key, r.end) < 0);
}

/** Every key range a txn compares, reads or writes, on both branches and nested. */
export function txnRanges(r: TxnRequest): KeyRange[] {
  const out: KeyRange[] = r.compare.map((c) => toKeyRange(c.key, c.rangeEnd));
  for (const op of [...r.success, ...r.failure]) {
    const q = op.request;
    if (q.case === "requestTxn") out.push(...txnRanges(q.value));
    else if (q.case === "requestPut") out.push(toKeyRange(q.value.key, new Uint8Array(0)));
    else if (q.case) out.push(toKeyRange(q.value.key, q.value.rangeEnd));
  }
  return out;
}
