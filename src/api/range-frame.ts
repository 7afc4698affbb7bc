// A RangeResponse written straight into its gRPC frame (flag byte, length, message). The
// key-values come either as objects, encoded here, or already encoded by the read (a SQLite
// read thread does it): then the frame is three pieces around those bytes, never copied
// into one buffer. The bytes are exactly toBinary's (a unit test compares them).
import { intField, kvsSize, ProtoWriter, varintSize, writeKvs } from "../mvcc/kv-encoding.ts";
import type { KeyValue } from "../mvcc/types.ts";

export interface RangeAnswer {
  header: { clusterId: bigint; memberId: bigint; revision: bigint; raftTerm: bigint };
  kvs: KeyValue[];
  /** the kvs field already encoded (then `kvs` is empty) */
  encodedKvs?: Uint8Array;
  more: boolean;
  count: bigint;
}

/**
 * A buffer for a gRPC frame of a `messageSize`-byte message: the flag byte (0, not
 * compressed) and the big-endian length written, room for `here` bytes of the message after
 * them (less than all of it when the rest follows as pieces of its own).
 */
export function grpcFrameBuffer(messageSize: number, here = messageSize): Uint8Array {
  const buf = new Uint8Array(5 + here);
  buf[1] = messageSize >>> 24;
  buf[2] = (messageSize >>> 16) & 0xff;
  buf[3] = (messageSize >>> 8) & 0xff;
  buf[4] = messageSize & 0xff;
  return buf;
}

/** the cluster and member IDs last encoded: every response's header carries the same ones */
let ids: { clusterId: bigint; memberId: bigint; bytes: Uint8Array } = { clusterId: 0n, memberId: 0n, bytes: new Uint8Array(0) };

/** the id fields of a header without ids (a txn's inner answers): none, as proto3 leaves zeros out */
const NO_IDS = new Uint8Array(0);

/**
 * A ResponseHeader's cluster_id and member_id fields, encoded. Kept from the last call:
 * they are random 64-bit numbers, whose varints took a bigint loop each on every answer.
 * Headers without ids are answered apart: taken for a change of ids, the inner answers of
 * every txn had the ids encoded again twice per txn (3% of a create's samples).
 */
export function idFields(clusterId: bigint, memberId: bigint): Uint8Array {
  if (clusterId === 0n && memberId === 0n) return NO_IDS;
  if (clusterId !== ids.clusterId || memberId !== ids.memberId) {
    const w = new ProtoWriter(new Uint8Array(intField(clusterId) + intField(memberId)));
    w.int(0x08, clusterId);
    w.int(0x10, memberId);
    ids = { clusterId, memberId, bytes: w.buf };
  }
  return ids.bytes;
}

/** the size of a ResponseHeader's fields */
export function headerSize(h: RangeAnswer["header"]): number {
  return idFields(h.clusterId, h.memberId).length + intField(h.revision) + intField(h.raftTerm);
}

/** Writes a RangeResponse's header (field 1) of that size. */
export function writeHeader(w: ProtoWriter, h: RangeAnswer["header"], size: number): void {
  w.buf[w.pos++] = 0x0a;
  w.small(size);
  const id = idFields(h.clusterId, h.memberId);
  w.buf.set(id, w.pos);
  w.pos += id.length;
  w.int(0x18, h.revision);
  w.int(0x20, h.raftTerm);
}

/** Writes a RangeResponse's `more` (field 3, only when true) and `count` (field 4). */
export function writeMoreAndCount(w: ProtoWriter, more: boolean, count: bigint): void {
  if (more) {
    w.buf[w.pos++] = 0x18;
    w.buf[w.pos++] = 1;
  }
  w.int(0x20, count);
}

/** The frame of a RangeResponse, in pieces to be sent one after another. */
export function rangeFrame(r: RangeAnswer): Uint8Array[] {
  const h = r.header;
  const hSize = headerSize(h);
  const head = 1 + varintSize(BigInt(hSize)) + hSize;
  const sizes: number[] = [];
  const kvs = r.encodedKvs ? r.encodedKvs.length : kvsSize(r.kvs, sizes);
  const tail = (r.more ? 2 : 0) + intField(r.count);
  const size = head + kvs + tail;

  const buf = grpcFrameBuffer(size, size - (r.encodedKvs ? kvs : 0));
  const w = new ProtoWriter(buf, 5);
  writeHeader(w, h, hSize);
  const split = w.pos;
  if (!r.encodedKvs) writeKvs(w, r.kvs, sizes);
  writeMoreAndCount(w, r.more, r.count);
  return r.encodedKvs ? [buf.subarray(0, split), r.encodedKvs, buf.subarray(split)] : [buf];
}
