// The hand-written decoder of Txn, Put, Range and DeleteRange requests must make exactly
// the message protobuf-es's fromBinary makes, or give up (and leave it to fromBinary):
// random requests, their encodings mutated (unknown fields, fields repeated, huge and
// negative varints, cut short, bytes flipped), decoded both ways and compared field by field.
import { describe, expect, test } from "bun:test";
import { create, type DescMessage, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import {
  CompareSchema,
  DeleteRangeRequestSchema,
  PutRequestSchema,
  RangeRequestSchema,
  RequestOpSchema,
  TxnRequestSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { decodeRequest } from "../../src/api/request-decoding.ts";
import { prng, type Rng } from "../support/prng.ts";

const INT64S = [0n, 1n, 127n, 128n, 300n, 2n ** 31n, 2n ** 48n - 1n, 2n ** 48n, 2n ** 49n, 2n ** 53n + 1n, 2n ** 63n - 1n, -1n, -(2n ** 63n)];
const int64 = (r: Rng) => (r.chance(0.5) ? 0n : r.chance(0.7) ? BigInt(r.int(1_000_000)) : r.pick(INT64S));
const ENUMS = [0, 1, 2, 3, 4, 5, 127, 128, 70_000, 2 ** 28, -1];
const enumValue = (r: Rng) => (r.chance(0.8) ? r.int(5) : r.pick(ENUMS));
const key = (r: Rng) => (r.chance(0.1) ? new Uint8Array(0) : r.chance(0.5) ? new TextEncoder().encode(`/registry/pods/ns/p${r.int(1000)}`) : r.bytes(40));

function range(r: Rng): MessageInitShape<typeof RangeRequestSchema> {
  return {
    key: key(r),
    rangeEnd: r.chance(0.5) ? new Uint8Array(0) : key(r),
    limit: int64(r),
    revision: int64(r),
    sortOrder: r.chance(0.7) ? 0 : enumValue(r),
    sortTarget: r.chance(0.7) ? 0 : enumValue(r),
    serializable: r.chance(0.3),
    keysOnly: r.chance(0.3),
    countOnly: r.chance(0.3),
    minModRevision: r.chance(0.8) ? 0n : int64(r),
    maxModRevision: r.chance(0.8) ? 0n : int64(r),
    minCreateRevision: r.chance(0.8) ? 0n : int64(r),
    maxCreateRevision: r.chance(0.8) ? 0n : int64(r),
    labelSelector: r.chance(0.9) ? "" : r.pick(["app=web", "é"]),
    fieldSelector: r.chance(0.9) ? "" : "metadata.name=x",
  };
}

function put(r: Rng): MessageInitShape<typeof PutRequestSchema> {
  return { key: key(r), value: r.bytes(r.chance(0.1) ? 3000 : 60), lease: int64(r), prevKv: r.chance(0.3), ignoreValue: r.chance(0.2), ignoreLease: r.chance(0.2) };
}

function del(r: Rng): MessageInitShape<typeof DeleteRangeRequestSchema> {
  return { key: key(r), rangeEnd: r.chance(0.5) ? new Uint8Array(0) : key(r), prevKv: r.chance(0.3) };
}

function op(r: Rng, depth: number): MessageInitShape<typeof RequestOpSchema> {
  switch (r.int(depth < 3 ? 5 : 4)) {
    case 0:
      return { request: { case: "requestRange", value: range(r) } };
    case 1:
    case 2:
      return { request: { case: "requestPut", value: put(r) } };
    case 3:
      return r.chance(0.2) ? {} : { request: { case: "requestDeleteRange", value: del(r) } };
    default:
      return { request: { case: "requestTxn", value: txn(r, depth + 1) } };
  }
}

function txn(r: Rng, depth = 0): MessageInitShape<typeof TxnRequestSchema> {
  const targets = ["version", "createRevision", "modRevision", "value", "lease"] as const;
  const compare = Array.from({ length: r.int(4) }, () => {
    const t = r.chance(0.1) ? undefined : r.pick([...targets]);
    return {
      result: enumValue(r),
      target: enumValue(r),
      key: key(r),
      rangeEnd: r.chance(0.8) ? new Uint8Array(0) : key(r),
      targetUnion: t === undefined ? { case: undefined } : t === "value" ? { case: t, value: r.bytes(10) } : { case: t, value: int64(r) },
    };
  });
  const ops = () => Array.from({ length: r.int(4) }, () => op(r, depth));
  return { compare: compare as never, success: ops(), failure: ops() };
}

/** a varint's bytes, at least `min` long (protobuf allows padding with continuation bits) */
function varint(v: bigint, min = 1): number[] {
  const out: number[] = [];
  let u = BigInt.asUintN(64, v);
  do {
    out.push(Number(u & 127n));
    u >>= 7n;
  } while (u > 0n || out.length < min);
  return out.map((b, i) => (i < out.length - 1 ? b | 128 : b));
}

/** the encoding changed in one of the ways a client or an attacker might */
function mutate(r: Rng, bytes: Uint8Array): Uint8Array {
  const b = [...bytes];
  switch (r.int(8)) {
    case 0: // an unknown field at the end
      return new Uint8Array([...b, ...varint(BigInt((r.pick([16, 17, 99, 1000]) << 3) | r.pick([0, 2]))), 0]);
    case 1: // the whole message twice: repeated fields twice, singular ones merged
      return new Uint8Array([...b, ...b]);
    case 2: // cut short
      return new Uint8Array(b.slice(0, r.int(b.length)));
    case 3: // a byte flipped
      if (b.length > 0) b[r.int(b.length)] ^= 1 << r.int(8);
      return new Uint8Array(b);
    case 4: // a varint field (number 1..15) with a padded or huge value
      return new Uint8Array([...b, (1 + r.int(15)) << 3, ...varint(r.pick(INT64S), r.int(11))]);
    case 5: // a length-delimited field 1..4 with random content
      return new Uint8Array([...b, ((1 + r.int(4)) << 3) | 2, ...varint(BigInt(r.int(6))), ...r.bytes(5)]);
    case 6: // field 0 or a group wire type
      return new Uint8Array([...b, r.pick([0, 3, 4, 0x0b, 0x0c]), 0]);
    default: // random bytes appended
      return new Uint8Array([...b, ...r.bytes(6)]);
  }
}

/** decodes both ways; returns whether the hand decoder took it */
function compareDecoders(schema: DescMessage, bytes: Uint8Array): boolean {
  const fast = decodeRequest(schema, bytes);
  let slow: unknown;
  let failed = false;
  try {
    slow = fromBinary(schema, bytes);
  } catch {
    failed = true;
  }
  if (fast === undefined) return false;
  // a request fromBinary refuses is never taken
  expect(failed).toBe(false);
  expect(fast as object).toStrictEqual(slow as object);
  return true;
}

const SCHEMAS: Array<[string, DescMessage, (r: Rng) => unknown]> = [
  ["TxnRequest", TxnRequestSchema, (r) => txn(r)],
  ["PutRequest", PutRequestSchema, put],
  ["RangeRequest", RangeRequestSchema, range],
  ["DeleteRangeRequest", DeleteRangeRequestSchema, del],
];

describe("decodeRequest", () => {
  for (const [name, schema, gen] of SCHEMAS) {
    test(`${name}: random requests decode as fromBinary decodes them`, () => {
      const r = prng(name.length * 7919);
      let taken = 0;
      for (let i = 0; i < 3000; i++) taken += compareDecoders(schema, toBinary(schema, create(schema, gen(r) as never))) ? 1 : 0;
      // most are in the plain form (not every one: negative and huge numbers, selectors)
      expect(taken).toBeGreaterThan(1000);
    });

    test(`${name}: mutated encodings decode as fromBinary decodes them, or are left to it`, () => {
      const r = prng(name.length * 104729);
      let taken = 0;
      for (let i = 0; i < 5000; i++) {
        let bytes: Uint8Array = toBinary(schema, create(schema, gen(r) as never));
        for (let m = 1 + r.int(2); m > 0; m--) bytes = mutate(r, bytes);
        taken += compareDecoders(schema, bytes) ? 1 : 0;
      }
      // some mutations keep the plain form (a cut at a field's end, a padded varint)
      expect(taken).toBeGreaterThan(100);
    });
  }

  test("kube-apiserver's create and guarded update are taken", () => {
    const k = new TextEncoder().encode("/registry/configmaps/default/cm-1");
    const value = new Uint8Array(2048).fill(0x6b);
    const createTxn = create(TxnRequestSchema, {
      compare: [{ key: k, target: 2, result: 0, targetUnion: { case: "modRevision", value: 0n } }],
      success: [{ request: { case: "requestPut", value: { key: k, value, lease: 0n } } }],
    });
    const update = create(TxnRequestSchema, {
      compare: [{ key: k, target: 2, result: 0, targetUnion: { case: "modRevision", value: 123_456n } }],
      success: [{ request: { case: "requestPut", value: { key: k, value } } }],
      failure: [{ request: { case: "requestRange", value: { key: k } } }],
    });
    for (const m of [createTxn, update]) {
      const bytes = toBinary(TxnRequestSchema, m);
      expect(decodeRequest(TxnRequestSchema, bytes)).toStrictEqual(fromBinary(TxnRequestSchema, bytes));
    }
  });

  test("a message whose fields come twice inside one txn operation or compare (merged, or a oneof switched)", () => {
    const r = prng(31337);
    const field = (no: number, body: Uint8Array) => [(no << 3) | 2, ...varint(BigInt(body.length)), ...body];
    let same = 0;
    for (let i = 0; i < 2000; i++) {
      const t = create(TxnRequestSchema, txn(r));
      const ops = [...t.success, ...t.failure];
      const a = r.pick(ops.length ? ops : [create(RequestOpSchema, {})]);
      const b = r.chance(0.5) ? a : r.pick(ops.length ? ops : [a]);
      const opBytes = new Uint8Array([...toBinary(RequestOpSchema, a), ...toBinary(RequestOpSchema, b)]);
      const cs = t.compare.length ? t.compare : [create(CompareSchema, {})];
      const c1 = r.pick(cs), c2 = r.pick(cs);
      const compareBytes = new Uint8Array([...toBinary(CompareSchema, c1), ...toBinary(CompareSchema, c2)]);
      const bytes = new Uint8Array([...field(1, compareBytes), ...field(2, opBytes)]);
      same += compareDecoders(TxnRequestSchema, bytes) ? 1 : 0;
    }
    // some have one member at most in each (an empty operation, a compare without a target)
    expect(same).toBeGreaterThan(0);
  });

  test("edge cases: empty message, empty key, values at the bounds of the plain form", () => {
    const cases: Array<[DescMessage, number[]]> = [
      [TxnRequestSchema, []],
      [PutRequestSchema, [0x0a, 0x00]], // an empty key, present
      [PutRequestSchema, [0x18, ...varint(2n ** 49n - 1n)]], // the largest lease taken
      [PutRequestSchema, [0x18, ...varint(2n ** 49n)]], // one more: left to fromBinary
      [PutRequestSchema, [0x18, ...varint(-1n)]], // negative: ten bytes, left to fromBinary
      [PutRequestSchema, [0x20, 0x80, 0x00]], // a padded false
      [PutRequestSchema, [0x20, 0x02]], // a bool of 2 is true
      [RangeRequestSchema, [0x28, ...varint(2n ** 31n - 1n)]], // an enum beyond the plain form
      [RangeRequestSchema, [0x72, 0x00]], // an empty selector, present
      [PutRequestSchema, [0x0a, 0x05, 0x61]], // a length beyond the message
    ];
    for (const [schema, bytes] of cases) compareDecoders(schema, new Uint8Array(bytes));
    expect(decodeRequest(PutRequestSchema, new Uint8Array([0x18, ...varint(2n ** 49n - 1n)]))).toMatchObject({ lease: 2n ** 49n - 1n });
    expect(decodeRequest(PutRequestSchema, new Uint8Array([0x18, ...varint(-1n)]))).toBeUndefined();
  });
});
