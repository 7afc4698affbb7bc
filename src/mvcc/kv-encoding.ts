// Key-values in protobuf's wire format, as the `kvs` field (2) of etcd's RangeResponse holds
// them: each entry the field's tag, its length and an mvccpb.KeyValue. Written by hand, sizes
// first, into one buffer, each key and value copied once (protobuf-es's writer grows its
// buffer as it goes, which made encoding a list of 50,000 pods slower than reading it). The
// bytes are exactly toBinary's. Pure, so a SQLite read thread can encode what it read and
// hand the event loop one buffer instead of thousands of objects.
import { type Event, type KeyValue, PUT, type RangeResult } from "./types.ts";

const TWO_TO_53 = 2n ** 53n;
const TWO_TO_31 = 2n ** 31n;

/** bytes of a varint holding a non-negative integer n below 2^53 (a length, a size) */
export function smallSize(n: number): number {
  if (n < 128) return 1;
  if (n < 16384) return 2;
  if (n < 2097152) return 3;
  if (n < 268435456) return 4;
  let size = 5;
  for (n = Math.floor(n / 34359738368); n > 0; n = Math.floor(n / 128)) size++;
  return size;
}

/** bytes of a varint holding the 64-bit two's complement of v */
export function varintSize(v: bigint): number {
  if (v >= 0n && v < TWO_TO_53) {
    let n = Number(v), size = 1;
    while (n >= 128) {
      n = Math.floor(n / 128);
      size++;
    }
    return size;
  }
  let u = BigInt.asUintN(64, v), size = 1;
  while (u >= 128n) {
    u >>= 7n;
    size++;
  }
  return size;
}

export class ProtoWriter {
  pos: number;
  constructor(readonly buf: Uint8Array, start = 0) {
    this.pos = start;
  }

  varint(v: bigint): void {
    if (v >= 0n && v < TWO_TO_53) {
      let n = Number(v);
      while (n >= 128) {
        this.buf[this.pos++] = (n % 128) | 128;
        n = Math.floor(n / 128);
      }
      this.buf[this.pos++] = n;
      return;
    }
    let u = BigInt.asUintN(64, v);
    while (u >= 128n) {
      this.buf[this.pos++] = Number(u & 127n) | 128;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }

  small(n: number): void {
    while (n >= 128) {
      this.buf[this.pos++] = (n & 127) | 128;
      n >>>= 7;
    }
    this.buf[this.pos++] = n;
  }

  bytes(b: Uint8Array): void {
    this.small(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** an int64 field; zero is not written (proto3) */
  int(tag: number, v: bigint): void {
    if (v === 0n) return;
    this.buf[this.pos++] = tag;
    // revisions and versions: below 2^31 the varint is written without a bigint loop
    if (v > 0n && v < TWO_TO_31) this.small(Number(v));
    else this.varint(v);
  }
}

export const intField = (v: bigint): number => (v === 0n ? 0 : 1 + (v > 0n && v < TWO_TO_31 ? smallSize(Number(v)) : varintSize(v)));
const bytesField = (b: Uint8Array) => (b.length === 0 ? 0 : 1 + smallSize(b.length) + b.length);

/** the size of a KeyValue message */
export function kvSize(kv: KeyValue): number {
  return bytesField(kv.key) + intField(kv.createRevision) + intField(kv.modRevision) + intField(kv.version) +
    bytesField(kv.value) + intField(kv.lease);
}

/** Encodes kvs as entries of field 2 into a buffer of their own (it can be handed to another thread). */
export function encodeKvs(kvs: KeyValue[]): Uint8Array {
  const sizes: number[] = [];
  const w = new ProtoWriter(new Uint8Array(kvsSize(kvs, sizes)));
  writeKvs(w, kvs, sizes);
  return w.buf;
}

/** the byte length encodeKvs gives, with each entry's message size in `sizes` */
export function kvsSize(kvs: KeyValue[], sizes: number[]): number {
  let size = 0;
  for (const kv of kvs) {
    const s = kvSize(kv);
    sizes.push(s);
    size += 1 + smallSize(s) + s;
  }
  return size;
}

export function writeKvs(w: ProtoWriter, kvs: KeyValue[], sizes: number[]): void {
  for (let i = 0; i < kvs.length; i++) writeKv(w, 0x12, kvs[i]!, sizes[i]!);
}

/** a KeyValue as the length-delimited field `tag`, its message size known */
export function writeKv(w: ProtoWriter, tag: number, kv: KeyValue, size: number): void {
  w.buf[w.pos++] = tag;
  w.small(size);
  if (kv.key.length > 0) {
    w.buf[w.pos++] = 0x0a;
    w.bytes(kv.key);
  }
  w.int(0x10, kv.createRevision);
  w.int(0x18, kv.modRevision);
  w.int(0x20, kv.version);
  if (kv.value.length > 0) {
    w.buf[w.pos++] = 0x2a;
    w.bytes(kv.value);
  }
  w.int(0x30, kv.lease);
}

/**
 * An mvccpb.Event with its length in front, as a length-delimited field's data holds it
 * (a WatchResponse's `events`): one buffer, key and values copied once.
 */
export function encodeEvent(e: Event): Uint8Array {
  const kv = kvSize(e.kv);
  const prev = e.prevKv ? kvSize(e.prevKv) : 0;
  const body = (e.type === PUT ? 0 : 1 + smallSize(e.type)) + 1 + smallSize(kv) + kv +
    (e.prevKv ? 1 + smallSize(prev) + prev : 0);
  const w = new ProtoWriter(new Uint8Array(smallSize(body) + body));
  w.small(body);
  if (e.type !== PUT) {
    w.buf[w.pos++] = 0x08;
    w.small(e.type);
  }
  writeKv(w, 0x12, e.kv, kv);
  if (e.prevKv) writeKv(w, 0x1a, e.prevKv, prev);
  return w.buf;
}

/** A range result answering RangeQuery.encode: the first `keep` key-values encoded, no objects. */
export function encodeResult(res: RangeResult, keep: number): RangeResult {
  const kept = res.kvs.length > keep ? res.kvs.slice(0, keep) : res.kvs;
  return {
    kvs: [],
    count: res.count,
    revision: res.revision,
    selected: res.selected,
    encoded: { bytes: encodeKvs(kept), count: kept.length, more: res.kvs.length > keep, lastKey: kept.at(-1)?.key },
  };
}

/**
 * How many key-values encodeKvs's bytes hold, and the last one's key: what a reader of
 * encoded pages needs to know where the next page starts, without decoding the values.
 */
export function scanKvs(bytes: Uint8Array): { count: number; lastKey: Uint8Array | undefined } {
  let pos = 0, count = 0, last = -1;
  const varint = () => {
    let n = 0, shift = 1;
    for (;;) {
      const b = bytes[pos++]!;
      n += (b & 127) * shift;
      if (b < 128) return n;
      shift *= 128;
    }
  };
  while (pos < bytes.length) {
    if (bytes[pos++] !== 0x12) throw new Error("encoded key-values: not a kvs entry");
    const size = varint();
    last = pos;
    pos += size;
    count++;
  }
  if (pos !== bytes.length) throw new Error("encoded key-values: cut short");
  if (last < 0) return { count, lastKey: undefined };
  // an entry starts with its key (field 1), which etcd never leaves empty
  pos = last;
  if (bytes[pos++] !== 0x0a) throw new Error("encoded key-values: an entry without a key");
  const keyLength = varint();
  return { count, lastKey: bytes.subarray(pos, pos + keyLength) };
}
