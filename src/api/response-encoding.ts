// The answers to Txn, Put and DeleteRange written straight into their gRPC frames, as
// range-frame.ts writes Range's: protobuf-es's create and toBinary walk the descriptors
// field by field and were about a twentieth of a create's CPU. Sizes first (in the order
// the messages are written), then one buffer. The bytes are exactly toBinary's of the
// answer made a message with create (test/unit/response-encoding.test.ts).
import { intField, kvSize, ProtoWriter, writeKv } from "../mvcc/kv-encoding.ts";
import type { KeyValue } from "../mvcc/types.ts";
import { grpcFrameBuffer, idFields } from "./range-frame.ts";

/** a response header as answers carry it: the top one whole, nested ones with their revision only */
interface HeaderIn {
  clusterId?: bigint;
  memberId?: bigint;
  revision?: bigint;
  raftTerm?: bigint;
}

interface RangeIn {
  header?: HeaderIn;
  kvs?: KeyValue[];
  /** the kvs field already encoded (range-frame.ts) */
  encodedKvs?: Uint8Array;
  more?: boolean;
  count?: bigint;
}
interface PutIn {
  header?: HeaderIn;
  prevKv?: KeyValue;
}
interface DeleteIn {
  header?: HeaderIn;
  deleted?: bigint;
  prevKvs?: KeyValue[];
}
type OpIn = { response?: { case?: string; value?: unknown } };
interface TxnIn {
  header?: HeaderIn;
  succeeded?: boolean;
  responses?: OpIn[];
}

/** bytes of a length-delimited field (one-byte tag) whose data is `size` bytes */
const field = (size: number) => 1 + lengthSize(size) + size;

function lengthSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

const int = (v: bigint | undefined) => (v === undefined ? 0 : intField(v));

function headerSize(h: HeaderIn): number {
  return idFields(h.clusterId ?? 0n, h.memberId ?? 0n).length + int(h.revision) + int(h.raftTerm);
}

/**
 * Message sizes in the order they are written: each message's own size is pushed before
 * those of the messages inside it.
 */
class Sizes {
  readonly list: number[] = [];
  private next = 0;

  /** reserves a message's place; its size is set once its fields are counted */
  open(): number {
    this.list.push(0);
    return this.list.length - 1;
  }

  close(at: number, size: number): number {
    this.list[at] = size;
    return size;
  }

  /** the next message's size while writing */
  take(): number {
    return this.list[this.next++]!;
  }
}

function sizeHeader(s: Sizes, h: HeaderIn | undefined): number {
  if (h === undefined) return 0;
  const at = s.open();
  return field(s.close(at, headerSize(h)));
}

function sizeKvs(s: Sizes, kvs: KeyValue[] | undefined): number {
  let size = 0;
  for (const kv of kvs ?? []) {
    const at = s.open();
    size += field(s.close(at, kvSize(kv)));
  }
  return size;
}

function sizeRange(s: Sizes, r: RangeIn): number {
  let size = sizeHeader(s, r.header) + sizeKvs(s, r.kvs);
  if (r.encodedKvs) size += r.encodedKvs.length;
  return size + (r.more ? 2 : 0) + int(r.count);
}

function sizePut(s: Sizes, r: PutIn): number {
  let size = sizeHeader(s, r.header);
  if (r.prevKv !== undefined) {
    const at = s.open();
    size += field(s.close(at, kvSize(r.prevKv)));
  }
  return size;
}

function sizeDelete(s: Sizes, r: DeleteIn): number {
  return sizeHeader(s, r.header) + int(r.deleted) + sizeKvs(s, r.prevKvs);
}

function sizeTxn(s: Sizes, r: TxnIn): number {
  let size = sizeHeader(s, r.header) + (r.succeeded ? 2 : 0);
  for (const op of r.responses ?? []) {
    const at = s.open();
    size += field(s.close(at, sizeOp(s, op)));
  }
  return size;
}

function sizeOp(s: Sizes, op: OpIn): number {
  const r = op.response;
  if (r?.value === undefined) return 0;
  const at = s.open();
  switch (r.case) {
    case "responseRange":
      return field(s.close(at, sizeRange(s, r.value as RangeIn)));
    case "responsePut":
      return field(s.close(at, sizePut(s, r.value as PutIn)));
    case "responseDeleteRange":
      return field(s.close(at, sizeDelete(s, r.value as DeleteIn)));
    case "responseTxn":
      return field(s.close(at, sizeTxn(s, r.value as TxnIn)));
  }
  throw new Error(`a txn's response of unknown kind ${String(r.case)}`);
}

function writeLength(w: ProtoWriter, tag: number, size: number): void {
  w.buf[w.pos++] = tag;
  w.small(size);
}

function writeHeader(w: ProtoWriter, s: Sizes, h: HeaderIn | undefined): void {
  if (h === undefined) return;
  writeLength(w, 0x0a, s.take());
  const id = idFields(h.clusterId ?? 0n, h.memberId ?? 0n);
  w.buf.set(id, w.pos);
  w.pos += id.length;
  if (h.revision !== undefined) w.int(0x18, h.revision);
  if (h.raftTerm !== undefined) w.int(0x20, h.raftTerm);
}

function writeKvList(w: ProtoWriter, s: Sizes, tag: number, kvs: KeyValue[] | undefined): void {
  for (const kv of kvs ?? []) writeKv(w, tag, kv, s.take());
}

function writeRange(w: ProtoWriter, s: Sizes, r: RangeIn): void {
  writeHeader(w, s, r.header);
  writeKvList(w, s, 0x12, r.kvs);
  if (r.encodedKvs) {
    w.buf.set(r.encodedKvs, w.pos);
    w.pos += r.encodedKvs.length;
  }
  if (r.more) {
    w.buf[w.pos++] = 0x18;
    w.buf[w.pos++] = 1;
  }
  if (r.count !== undefined) w.int(0x20, r.count);
}

function writePut(w: ProtoWriter, s: Sizes, r: PutIn): void {
  writeHeader(w, s, r.header);
  if (r.prevKv !== undefined) writeKv(w, 0x12, r.prevKv, s.take());
}

function writeDelete(w: ProtoWriter, s: Sizes, r: DeleteIn): void {
  writeHeader(w, s, r.header);
  if (r.deleted !== undefined) w.int(0x10, r.deleted);
  writeKvList(w, s, 0x1a, r.prevKvs);
}

function writeTxn(w: ProtoWriter, s: Sizes, r: TxnIn): void {
  writeHeader(w, s, r.header);
  if (r.succeeded) {
    w.buf[w.pos++] = 0x10;
    w.buf[w.pos++] = 1;
  }
  for (const op of r.responses ?? []) {
    writeLength(w, 0x1a, s.take());
    const inner = op.response;
    if (inner?.value === undefined) continue;
    switch (inner.case) {
      case "responseRange":
        writeLength(w, 0x0a, s.take());
        writeRange(w, s, inner.value as RangeIn);
        break;
      case "responsePut":
        writeLength(w, 0x12, s.take());
        writePut(w, s, inner.value as PutIn);
        break;
      case "responseDeleteRange":
        writeLength(w, 0x1a, s.take());
        writeDelete(w, s, inner.value as DeleteIn);
        break;
      case "responseTxn":
        writeLength(w, 0x22, s.take());
        writeTxn(w, s, inner.value as TxnIn);
        break;
    }
  }
}

/** `answer` as one gRPC frame (flag byte, length, message) */
function frameOf<T>(size: (s: Sizes, r: T) => number, write: (w: ProtoWriter, s: Sizes, r: T) => void): (answer: T) => Uint8Array[] {
  return (answer) => {
    const s = new Sizes();
    const n = size(s, answer);
    const buf = grpcFrameBuffer(n);
    const w = new ProtoWriter(buf, 5);
    write(w, s, answer);
    if (w.pos !== buf.length) throw new Error(`encoding an answer: wrote ${w.pos - 5} bytes of ${n}`);
    return [buf];
  };
}

export const txnFrame = frameOf(sizeTxn, writeTxn);
export const putFrame = frameOf(sizePut, writePut);
export const deleteRangeFrame = frameOf(sizeDelete, writeDelete);
