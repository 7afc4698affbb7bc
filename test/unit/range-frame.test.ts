// The hand-written RangeResponse frame must be byte for byte what protobuf-es writes.
import { describe, expect, test } from "bun:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { RangeResponseSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { idFields, type RangeAnswer, rangeFrame } from "../../src/api/range-frame.ts";
import { encodeKvs } from "../../src/mvcc/kv-encoding.ts";

const bytes = (n: number, fill = 7) => new Uint8Array(n).fill(fill);
const header = { clusterId: 0xfedcba9876543210n, memberId: 1n, revision: 12345n, raftTerm: 2n };
const kv = (over: Partial<RangeAnswer["kvs"][number]> = {}) => ({
  key: bytes(20, 0x61),
  createRevision: 3n,
  modRevision: 9n,
  version: 2n,
  value: bytes(300),
  lease: 0n,
  ...over,
});

const cases: Array<[string, RangeAnswer]> = [
  ["empty", { header, kvs: [], more: false, count: 0n }],
  ["zero header", { header: { clusterId: 0n, memberId: 0n, revision: 0n, raftTerm: 0n }, kvs: [], more: false, count: 0n }],
  ["one key", { header, kvs: [kv()], more: false, count: 1n }],
  ["more and count", { header, kvs: [kv(), kv({ key: bytes(3, 0x62) })], more: true, count: 1000n }],
  ["keys only (empty values)", { header, kvs: [kv({ value: new Uint8Array(0) })], more: false, count: 1n }],
  ["large values (multi-byte lengths)", { header, kvs: [kv({ value: bytes(70_000) }), kv({ value: bytes(2_000_000) })], more: false, count: 2n }],
  ["lease IDs and revisions near 2^63", { header, kvs: [kv({ lease: 0x7fffffffffffffffn, modRevision: 2n ** 53n + 1n })], more: false, count: 1n }],
  ["negative int64 (ten-byte varints)", { header: { ...header, revision: -1n }, kvs: [kv({ lease: -5n, version: -1n })], more: false, count: -2n }],
  ["uint64 above 2^63", { header: { ...header, clusterId: 2n ** 64n - 1n }, kvs: [], more: false, count: 0n }],
  // each step of a varint's length, on both sides of where small revisions take a path without bigints (2^31)
  ["revisions at every varint length step", {
    header: { ...header, revision: 2n ** 31n },
    kvs: [0, 7, 14, 21, 28, 31, 32, 35, 42, 49, 56, 62].flatMap((bits) => {
      const at = 2n ** BigInt(bits);
      return [kv({ createRevision: at - 1n, modRevision: at, version: at + 1n, lease: at > 1n ? at - 2n : 0n })];
    }),
    more: false,
    count: 2n ** 31n - 1n,
  }],
  ["keys and values at varint length steps", { header, kvs: [127, 128, 16_383, 16_384].map((n) => kv({ key: bytes(n, 0x63), value: bytes(n) })), more: false, count: 4n }],
];

describe("rangeFrame", () => {
  for (const [name, answer] of cases) {
    const want = toBinary(RangeResponseSchema, create(RangeResponseSchema, answer as never));
    const check = (pieces: Uint8Array[]) => {
      const frame = Buffer.concat(pieces);
      expect(frame[0]).toBe(0);
      expect(frame.readUInt32BE(1)).toBe(want.length);
      expect(frame.subarray(5).equals(Buffer.from(want))).toBe(true);
    };
    test(name, () => check(rangeFrame(answer)));
    // as a SQLite read thread hands them over: the kvs field already encoded
    test(`${name}, key-values encoded beforehand`, () => check(rangeFrame({ ...answer, kvs: [], encodedKvs: encodeKvs(answer.kvs) })));
  }
});

test("a header's ids are encoded once, though answers without ids (a txn's inner ones) come between", () => {
  const cluster = 0xdeadbeefcafe1234n, member = 0x8000000000000001n;
  const first = idFields(cluster, member);
  expect(idFields(0n, 0n).length).toBe(0);
  expect(idFields(cluster, member)).toBe(first);
  expect(Buffer.from(first).toString("hex")).toBe(Buffer.from(toBinary(RangeResponseSchema, create(RangeResponseSchema, { header: { clusterId: cluster, memberId: member } })).subarray(2)).toString("hex"));
});
