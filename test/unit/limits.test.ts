import { expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  DeleteRangeRequestSchema,
  type PutRequest,
  PutRequestSchema,
  type TxnRequest,
  TxnRequestSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { arrivedIn, checkRequestSize } from "../../src/api/limits.ts";

// checkRequestSize lets a request that arrived within max-request-bytes through without
// encoding it again; that is only right while a decoded Put, DeleteRange or Txn never
// encodes longer than it arrived, whatever form it arrived in.

const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

/** a pseudo-random generator, so a failure can be replayed */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function randomPut(r: () => number): PutRequest {
  return create(PutRequestSchema, {
    key: bytes(Math.floor(r() * 40), 1),
    value: bytes(Math.floor(r() * 300), 2),
    lease: r() < 0.5 ? 0n : BigInt(Math.floor(r() * 2 ** 40)),
    prevKv: r() < 0.5,
    ignoreValue: r() < 0.2,
  });
}

function randomTxn(r: () => number, depth = 0): TxnRequest {
  const op = () => {
    const k = r();
    if (k < 0.4) return { request: { case: "requestPut" as const, value: randomPut(r) } };
    if (k < 0.7) return { request: { case: "requestRange" as const, value: { key: bytes(5, 3), rangeEnd: r() < 0.5 ? bytes(6, 4) : new Uint8Array(0), limit: BigInt(Math.floor(r() * 100)) } } };
    if (k < 0.9 || depth > 0) return { request: { case: "requestDeleteRange" as const, value: { key: bytes(7, 5), prevKv: r() < 0.5 } } };
    return { request: { case: "requestTxn" as const, value: randomTxn(r, depth + 1) } };
  };
  const n = (m: number) => Math.floor(r() * m);
  return create(TxnRequestSchema, {
    compare: Array.from({ length: n(3) }, () => ({
      key: bytes(n(20), 6),
      result: n(4),
      target: n(4),
      targetUnion: r() < 0.5 ? { case: "modRevision" as const, value: BigInt(n(1e6)) } : { case: "value" as const, value: bytes(n(50), 7) },
    })),
    success: Array.from({ length: n(4) }, op),
    failure: Array.from({ length: n(3) }, op),
  });
}

test("a Put, DeleteRange or Txn decoded from any concatenation of encodings encodes no longer than it arrived", () => {
  // concatenated encodings are one message on the wire (later singular fields win, messages merge)
  const r = rng(25);
  for (let i = 0; i < 300; i++) {
    const cases: Array<[typeof PutRequestSchema | typeof TxnRequestSchema | typeof DeleteRangeRequestSchema, Uint8Array[]]> = [
      [PutRequestSchema, [toBinary(PutRequestSchema, randomPut(r)), toBinary(PutRequestSchema, randomPut(r))]],
      [TxnRequestSchema, [toBinary(TxnRequestSchema, randomTxn(r)), toBinary(TxnRequestSchema, randomTxn(r)), toBinary(TxnRequestSchema, randomTxn(r))]],
      [DeleteRangeRequestSchema, [toBinary(DeleteRangeRequestSchema, create(DeleteRangeRequestSchema, { key: bytes(9, i), prevKv: true })), toBinary(DeleteRangeRequestSchema, create(DeleteRangeRequestSchema, { rangeEnd: bytes(3, i) }))]],
    ];
    for (const [schema, parts] of cases) {
      const wire = Buffer.concat(parts);
      expect(toBinary(schema, fromBinary(schema as typeof PutRequestSchema, wire) as never).length).toBeLessThanOrEqual(wire.length);
    }
  }
});

test("fields at their default, overlong varints and unknown fields do not make a Put longer than it arrived", () => {
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).bytes(bytes(10, 1));
  w.tag(2, WireType.LengthDelimited).bytes(bytes(100, 2));
  // lease 0 written out, and a lease written as a 10-byte varint
  w.tag(3, WireType.Varint).int64(0n);
  w.tag(3, WireType.Varint).raw(Uint8Array.of(0x85, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00));
  w.tag(4, WireType.Varint).bool(false);
  // a field etcd's PutRequest does not have
  w.tag(99, WireType.LengthDelimited).bytes(bytes(20, 3));
  const wire = w.finish();
  const put = fromBinary(PutRequestSchema, wire);
  expect(put.lease).toBe(5n);
  expect(toBinary(PutRequestSchema, put).length).toBeLessThanOrEqual(wire.length);
});

test("checkRequestSize: a request that arrived within the limit passes, any other is measured", () => {
  const limits = { maxTxnOps: 128, maxRequestBytes: 100 };
  const big = create(PutRequestSchema, { key: bytes(3, 1), value: bytes(200, 2) });
  // measured: never arrived (a request built here, or one from another codec)
  expect(() => checkRequestSize(limits, PutRequestSchema, big)).toThrow("etcdserver: request is too large");
  // measured: arrived above the limit
  arrivedIn(big, 300);
  expect(() => checkRequestSize(limits, PutRequestSchema, big)).toThrow("etcdserver: request is too large");
  const small = create(PutRequestSchema, { key: bytes(3, 1), value: bytes(50, 2) });
  expect(() => checkRequestSize(limits, PutRequestSchema, small)).not.toThrow();
  // arrived above the limit, encodes within it (a long non-canonical form): measured, and passes
  arrivedIn(small, 150);
  expect(() => checkRequestSize(limits, PutRequestSchema, small)).not.toThrow();
  arrivedIn(small, 60);
  expect(() => checkRequestSize(limits, PutRequestSchema, small)).not.toThrow();
});
