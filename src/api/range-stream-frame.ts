// A RangeStreamResponse written straight into its gRPC frame, as range-frame.ts writes a
// RangeResponse: the chunk's RangeResponse as field 1, with the header, `more` and `count`
// only on the last chunk (etcd leaves them out of the others). Key-values read already
// encoded are sent as they are, between the frame's head and tail, never copied.
import { intField, kvsSize, ProtoWriter, varintSize, writeKvs } from "../mvcc/kv-encoding.ts";
import type { RangeChunk } from "../keyspace/contract.ts";
import { header, type ServerIdentity } from "./header.ts";
import { grpcFrameBuffer, headerSize, writeHeader, writeMoreAndCount } from "./range-frame.ts";

/** The frame of one chunk, in pieces to be sent one after another. */
export function rangeStreamFrame(c: RangeChunk, id: ServerIdentity): Uint8Array[] {
  const h = c.end && header(id, c.end.revision);
  const hSize = h ? headerSize(h) : 0;
  const sizes: number[] = [];
  const kvs = c.encodedKvs ? c.encodedKvs.length : kvsSize(c.kvs, sizes);
  const tail = c.end ? (c.end.more ? 2 : 0) + intField(c.end.count) : 0;
  const inner = (h ? 1 + varintSize(BigInt(hSize)) + hSize : 0) + kvs + tail;
  const size = 1 + varintSize(BigInt(inner)) + inner;

  const buf = grpcFrameBuffer(size, size - (c.encodedKvs ? kvs : 0));
  const w = new ProtoWriter(buf, 5);
  w.buf[w.pos++] = 0x0a;
  w.small(inner);
  if (h) writeHeader(w, h, hSize);
  const split = w.pos;
  if (!c.encodedKvs) writeKvs(w, c.kvs, sizes);
  if (c.end) writeMoreAndCount(w, c.end.more, c.end.count);
  return c.encodedKvs ? [buf.subarray(0, split), c.encodedKvs, buf.subarray(split)] : [buf];
}
