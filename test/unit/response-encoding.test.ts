// The hand-written Txn, Put and DeleteRange answers must be byte for byte what protobuf-es
// writes for the same answer made a message: random answers of every shape a txn can
// give (nested txns, empty and all-zero headers, negative and 64-bit numbers, large values).
import { describe, expect, test } from "bun:test";
import { create, type DescMessage, toBinary } from "@bufbuild/protobuf";
import { DeleteRangeResponseSchema, PutResponseSchema, TxnResponseSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { deleteRangeFrame, putFrame, txnFrame } from "../../src/api/response-encoding.ts";
import type { KeyValue } from "../../src/mvcc/types.ts";
import { prng, type Rng } from "../support/prng.ts";

const NUMBERS = [0n, 1n, 127n, 128n, 16_383n, 16_384n, 2n ** 53n + 1n, 2n ** 63n - 1n, -1n, -(2n ** 63n)];
const num = (r: Rng) => (r.chance(0.3) ? 0n : r.chance(0.6) ? BigInt(r.int(1_000_000)) : r.pick(NUMBERS));
const bytes = (r: Rng, max: number) => new Uint8Array(r.int(max + 1)).fill(0x61 + r.int(26));

function kv(r: Rng): KeyValue {
  return {
    key: bytes(r, 40),
    createRevision: num(r),
    modRevision: num(r),
    version: num(r),
    value: bytes(r, r.chance(0.05) ? 70_000 : r.chance(0.3) ? 200 : 3),
    lease: num(r),
  };
}
const kvs = (r: Rng) => Array.from({ length: r.int(4) }, () => kv(r));

/** a top header (every field), a nested one (revision only, maybe 0), or none */
function header(r: Rng) {
  const which = r.int(5);
  if (which === 0) return undefined;
  if (which === 1) return { revision: 0n };
  if (which === 2) return { revision: num(r) };
  return { clusterId: r.pick([0n, 0xfedcba9876543210n, 2n ** 64n - 1n]), memberId: r.pick([0n, 1n, 12_345n, 2n ** 63n]), revision: num(r), raftTerm: r.pick([0n, 2n]) };
}

const putAnswer = (r: Rng) => ({ header: header(r), prevKv: r.chance(0.5) ? kv(r) : undefined });
const deleteAnswer = (r: Rng) => ({ header: header(r), deleted: num(r), prevKvs: kvs(r) });
const rangeAnswer = (r: Rng) => ({ header: header(r), kvs: kvs(r), more: r.chance(0.3), count: num(r) });

function txnAnswer(r: Rng, depth = 0): unknown {
  const responses = Array.from({ length: r.int(5) }, () => {
    switch (r.int(depth < 3 ? 5 : 4)) {
      case 0:
        return { response: { case: "responseRange", value: rangeAnswer(r) } };
      case 1:
        return { response: { case: "responsePut", value: putAnswer(r) } };
      case 2:
        return { response: { case: "responseDeleteRange", value: deleteAnswer(r) } };
      case 3:
        return { response: { case: undefined } };
      default:
        return { response: { case: "responseTxn", value: txnAnswer(r, depth + 1) } };
    }
  });
  return { header: header(r), succeeded: r.chance(0.5), responses };
}

function expectSame(schema: DescMessage, frame: (a: never) => Uint8Array[], answer: unknown): void {
  const want = toBinary(schema, create(schema, answer as never));
  const got = Buffer.concat(frame(answer as never));
  expect(got[0]).toBe(0);
  expect(got.readUInt32BE(1)).toBe(want.length);
  expect(got.subarray(5).equals(Buffer.from(want))).toBe(true);
}

describe("answers encoded by hand", () => {
  const kinds: Array<[string, DescMessage, (a: never) => Uint8Array[], (r: Rng) => unknown]> = [
    ["TxnResponse", TxnResponseSchema, txnFrame, (r) => txnAnswer(r)],
    ["PutResponse", PutResponseSchema, putFrame, putAnswer],
    ["DeleteRangeResponse", DeleteRangeResponseSchema, deleteRangeFrame, deleteAnswer],
  ];
  for (const [name, schema, frame, gen] of kinds) {
    test(`${name}: random answers are toBinary's bytes`, () => {
      const r = prng(name.length * 65_537);
      for (let i = 0; i < 2000; i++) expectSame(schema, frame, gen(r));
    });
  }

  test("kube-apiserver's create and guarded update answers", () => {
    const top = { clusterId: 0xfedcba9876543210n, memberId: 1n, revision: 70_001n, raftTerm: 2n };
    const stored: KeyValue = { key: new TextEncoder().encode("/registry/configmaps/default/cm-1"), createRevision: 5n, modRevision: 9n, version: 2n, value: new Uint8Array(2048).fill(7), lease: 0n };
    expectSame(TxnResponseSchema, txnFrame, { header: top, succeeded: true, responses: [{ response: { case: "responsePut", value: { header: { revision: 70_001n } } } }] });
    expectSame(TxnResponseSchema, txnFrame, {
      header: top,
      succeeded: false,
      responses: [{ response: { case: "responseRange", value: { header: { revision: 70_001n }, kvs: [stored], more: false, count: 1n } } }],
    });
    expectSame(TxnResponseSchema, txnFrame, { header: top, succeeded: false, responses: [] });
  });
});
