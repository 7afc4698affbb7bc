// The KV requests Kubernetes sends on every write and read (Txn, Put, Range, DeleteRange)
// decoded by hand: protobuf-es's fromBinary walks the descriptors field by field, and was
// about a twentieth of a create's CPU. Only the plain form is read here — known fields with
// their own wire types, no field of a message or a oneof given twice, no unknown fields,
// no empty-string-only strings (selectors), varints no longer than they need to be for
// the values clients send, nesting a few levels deep. Anything else makes the decoder
// give up (undefined), and fromBinary decodes the request as before, with its errors: a
// message decoded here is exactly the one fromBinary makes (test/unit/request-decoding.test.ts).
import type { DescMessage } from "@bufbuild/protobuf";
import {
  type Compare,
  type DeleteRangeRequest,
  DeleteRangeRequestSchema,
  type PutRequest,
  PutRequestSchema,
  type RangeRequest,
  RangeRequestSchema,
  type RequestOp,
  type TxnRequest,
  TxnRequestSchema,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";

/** nested txns deeper than this are left to fromBinary */
const MAX_DEPTH = 8;

/** thrown inside the decoder when the request is not in the plain form; never escapes it */
const GIVE_UP = Symbol("give up");

const EMPTY = new Uint8Array(0);

class Cursor {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  /** a varint of at most `maxBytes` bytes (7 bits each, so at most 49 bits: a safe integer) */
  varint(maxBytes: number): number {
    const buf = this.buf;
    let n = 0, scale = 1;
    for (let i = 0; i < maxBytes; i++) {
      if (this.pos >= buf.length) throw GIVE_UP;
      const b = buf[this.pos++]!;
      n += (b & 127) * scale;
      if (b < 128) return n;
      scale *= 128;
    }
    throw GIVE_UP;
  }

  /** a field's tag: field number * 8 + wire type */
  tag(): number {
    return this.varint(4);
  }

  /** the end of a length-delimited field starting here */
  end(limit: number): number {
    const len = this.varint(4);
    const end = this.pos + len;
    if (end > limit) throw GIVE_UP;
    return end;
  }

  bytes(limit: number): Uint8Array {
    const end = this.end(limit);
    const b = this.buf.subarray(this.pos, end);
    this.pos = end;
    return b;
  }

  /** an int64 below 2^49 (negative ones take ten bytes: given up) */
  int64(): bigint {
    return BigInt(this.varint(7));
  }

  /** an enum or bool's varint: small ones only */
  small(): number {
    return this.varint(4);
  }

  /** an empty string (a non-empty one, UTF-8 to check, is given up) */
  emptyString(limit: number): string {
    if (this.end(limit) !== this.pos) throw GIVE_UP;
    return "";
  }
}

// wire types
const VARINT = 0, LEN = 2;

/** marks field `no` seen in `seen`, giving up when it was seen already (a merge or a oneof switch) */
function once(seen: number, no: number): number {
  const bit = 1 << no;
  if (seen & bit) throw GIVE_UP;
  return seen | bit;
}

function rangeRequest(c: Cursor, end: number): RangeRequest {
  const m: RangeRequest = {
    $typeName: "etcdserverpb.RangeRequest",
    key: EMPTY,
    rangeEnd: EMPTY,
    limit: 0n,
    revision: 0n,
    sortOrder: 0,
    sortTarget: 0,
    serializable: false,
    keysOnly: false,
    countOnly: false,
    minModRevision: 0n,
    maxModRevision: 0n,
    minCreateRevision: 0n,
    maxCreateRevision: 0n,
    labelSelector: "",
    fieldSelector: "",
  };
  while (c.pos < end) {
    const tag = c.tag();
    const no = tag >>> 3, wire = tag & 7;
    if (wire !== (no === 1 || no === 2 || no === 14 || no === 15 ? LEN : VARINT)) throw GIVE_UP;
    switch (no) {
      case 1: m.key = c.bytes(end); break;
      case 2: m.rangeEnd = c.bytes(end); break;
      case 3: m.limit = c.int64(); break;
      case 4: m.revision = c.int64(); break;
      case 5: m.sortOrder = c.small(); break;
      case 6: m.sortTarget = c.small(); break;
      case 7: m.serializable = c.small() !== 0; break;
      case 8: m.keysOnly = c.small() !== 0; break;
      case 9: m.countOnly = c.small() !== 0; break;
      case 10: m.minModRevision = c.int64(); break;
      case 11: m.maxModRevision = c.int64(); break;
      case 12: m.minCreateRevision = c.int64(); break;
      case 13: m.maxCreateRevision = c.int64(); break;
      case 14: m.labelSelector = c.emptyString(end); break;
      case 15: m.fieldSelector = c.emptyString(end); break;
      default: throw GIVE_UP;
    }
  }
  if (c.pos !== end) throw GIVE_UP;
  return m;
}

function putRequest(c: Cursor, end: number): PutRequest {
  const m: PutRequest = {
    $typeName: "etcdserverpb.PutRequest",
    key: EMPTY,
    value: EMPTY,
    lease: 0n,
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
  };
  while (c.pos < end) {
    const tag = c.tag();
    const no = tag >>> 3, wire = tag & 7;
    if (wire !== (no <= 2 ? LEN : VARINT)) throw GIVE_UP;
    switch (no) {
      case 1: m.key = c.bytes(end); break;
      case 2: m.value = c.bytes(end); break;
      case 3: m.lease = c.int64(); break;
      case 4: m.prevKv = c.small() !== 0; break;
      case 5: m.ignoreValue = c.small() !== 0; break;
      case 6: m.ignoreLease = c.small() !== 0; break;
      default: throw GIVE_UP;
    }
  }
  if (c.pos !== end) throw GIVE_UP;
  return m;
}

function deleteRangeRequest(c: Cursor, end: number): DeleteRangeRequest {
  const m: DeleteRangeRequest = { $typeName: "etcdserverpb.DeleteRangeRequest", key: EMPTY, rangeEnd: EMPTY, prevKv: false };
  while (c.pos < end) {
    const tag = c.tag();
    const no = tag >>> 3, wire = tag & 7;
    if (wire !== (no <= 2 ? LEN : VARINT)) throw GIVE_UP;
    switch (no) {
      case 1: m.key = c.bytes(end); break;
      case 2: m.rangeEnd = c.bytes(end); break;
      case 3: m.prevKv = c.small() !== 0; break;
      default: throw GIVE_UP;
    }
  }
  if (c.pos !== end) throw GIVE_UP;
  return m;
}

function compare(c: Cursor, end: number): Compare {
  const m: Compare = {
    $typeName: "etcdserverpb.Compare",
    result: 0,
    target: 0,
    key: EMPTY,
    targetUnion: { case: undefined },
    rangeEnd: EMPTY,
  };
  let union = 0;
  while (c.pos < end) {
    const tag = c.tag();
    const no = tag >>> 3, wire = tag & 7;
    if (wire !== (no === 3 || no === 7 || no === 64 ? LEN : VARINT)) throw GIVE_UP;
    switch (no) {
      case 1: m.result = c.small(); break;
      case 2: m.target = c.small(); break;
      case 3: m.key = c.bytes(end); break;
      // the target union: one member, once
      case 4: union = once(union, 0); m.targetUnion = { case: "version", value: c.int64() }; break;
      case 5: union = once(union, 0); m.targetUnion = { case: "createRevision", value: c.int64() }; break;
      case 6: union = once(union, 0); m.targetUnion = { case: "modRevision", value: c.int64() }; break;
      case 7: union = once(union, 0); m.targetUnion = { case: "value", value: c.bytes(end) }; break;
      case 8: union = once(union, 0); m.targetUnion = { case: "lease", value: c.int64() }; break;
      case 64: m.rangeEnd = c.bytes(end); break;
      default: throw GIVE_UP;
    }
  }
  if (c.pos !== end) throw GIVE_UP;
  return m;
}

function requestOp(c: Cursor, end: number, depth: number): RequestOp {
  const m: RequestOp = { $typeName: "etcdserverpb.RequestOp", request: { case: undefined } };
  let seen = 0;
  while (c.pos < end) {
    const tag = c.tag();
    const no = tag >>> 3;
    if ((tag & 7) !== LEN) throw GIVE_UP;
    // one member of the oneof, once: a second would be merged or replace the first
    seen = once(seen, 0);
    const inner = c.end(end);
    switch (no) {
      case 1: m.request = { case: "requestRange", value: rangeRequest(c, inner) }; break;
      case 2: m.request = { case: "requestPut", value: putRequest(c, inner) }; break;
      case 3: m.request = { case: "requestDeleteRange", value: deleteRangeRequest(c, inner) }; break;
      case 4: m.request = { case: "requestTxn", value: txnRequest(c, inner, depth + 1) }; break;
      default: throw GIVE_UP;
    }
  }
  if (c.pos !== end) throw GIVE_UP;
  return m;
}

function txnRequest(c: Cursor, end: number, depth: number): TxnRequest {
  if (depth > MAX_DEPTH) throw GIVE_UP;
  const m: TxnRequest = { $typeName: "etcdserverpb.TxnRequest", compare: [], success: [], failure: [] };
  while (c.pos < end) {
    const tag = c.tag();
    const no = tag >>> 3;
    if ((tag & 7) !== LEN) throw GIVE_UP;
    switch (no) {
      case 1: {
        const inner = c.end(end);
        m.compare.push(compare(c, inner));
        break;
      }
      case 2: {
        const inner = c.end(end);
        m.success.push(requestOp(c, inner, depth));
        break;
      }
      case 3: {
        const inner = c.end(end);
        m.failure.push(requestOp(c, inner, depth));
        break;
      }
      default: throw GIVE_UP;
    }
  }
  if (c.pos !== end) throw GIVE_UP;
  return m;
}

type Decoder = (c: Cursor, end: number) => unknown;

const DECODERS = new Map<DescMessage, Decoder>([
  [TxnRequestSchema, (c, end) => txnRequest(c, end, 0)],
  [PutRequestSchema, putRequest],
  [RangeRequestSchema, rangeRequest],
  [DeleteRangeRequestSchema, deleteRangeRequest],
]);

/** The request in `bytes` decoded by hand when it is of a kind decoded here and in the plain form; else undefined. */
export function decodeRequest(schema: DescMessage, bytes: Uint8Array): unknown {
  const decode = DECODERS.get(schema);
  if (!decode) return undefined;
  try {
    return decode(new Cursor(bytes), bytes.length);
  } catch (err) {
    if (err === GIVE_UP) return undefined;
    throw err;
  }
}
