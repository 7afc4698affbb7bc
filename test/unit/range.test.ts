// etcd's Range post-processing: what a request reads, and the answer made from the read.
import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { RangeRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { finishRange, rangeQuery } from "../../src/mvcc/range.ts";
import type { KeyValue } from "../../src/mvcc/types.ts";

const b = (s: string) => new TextEncoder().encode(s);
const d = (u: Uint8Array) => new TextDecoder().decode(u);
const kv = (key: string, mod: number, create: number, value = key): KeyValue => ({
  key: b(key),
  value: b(value),
  createRevision: BigInt(create),
  modRevision: BigInt(mod),
  version: 1n,
  lease: 0n,
});
// in key order, as a read returns them
const read = { kvs: [kv("a", 5, 1, "z"), kv("b", 3, 3, "y"), kv("c", 4, 2, "x")], count: 3n, revision: 9n };
const range = (init: Parameters<typeof create<typeof RangeRequestSchema>>[1]) => create(RangeRequestSchema, { key: b("a"), rangeEnd: b("d"), ...init });

describe("what a Range reads", () => {
  test("a plain page reads one key more than its limit, and may be encoded", () => {
    const q = rangeQuery(range({ limit: 2n }), { encodedKvs: true });
    expect(q).toMatchObject({ limit: 3, keysOnly: false, countOnly: false, encode: { keep: 2 } });
  });
  test("sorted or filtered requests read everything and are never encoded", () => {
    expect(rangeQuery(range({ limit: 2n, sortOrder: 2 }), { encodedKvs: true })).toMatchObject({ limit: 0, encode: undefined });
    expect(rangeQuery(range({ limit: 2n, minModRevision: 4n }), { encodedKvs: true })).toMatchObject({ limit: 0, encode: undefined });
  });
  test("a limit of 2^31 or more is none; sorting by value reads values even for keys-only", () => {
    expect(rangeQuery(range({ limit: 2n ** 63n - 1n })).limit).toBe(0);
    expect(rangeQuery(range({ keysOnly: true, sortTarget: 4, sortOrder: 1 })).keysOnly).toBe(false);
  });
});

describe("the answer made from a read", () => {
  test("cut to the limit says there is more; the count is the read's", () => {
    const out = finishRange(range({ limit: 2n }), read);
    expect(out.kvs.map((k) => d(k.key))).toEqual(["a", "b"]);
    expect(out).toMatchObject({ more: true, count: 3n, header: { revision: 9n } });
  });
  test("revision filters prune before the limit", () => {
    const out = finishRange(range({ minModRevision: 4n, maxCreateRevision: 2n }), read);
    expect(out.kvs.map((k) => d(k.key))).toEqual(["a", "c"]);
  });
  test("sorts by any target, descending too", () => {
    expect(finishRange(range({ sortTarget: 3, sortOrder: 2 }), read).kvs.map((k) => d(k.key))).toEqual(["a", "c", "b"]);
    expect(finishRange(range({ sortTarget: 4 }), read).kvs.map((k) => d(k.key))).toEqual(["c", "b", "a"]);
  });
  test("keys-only drops values, count-only drops key-values", () => {
    expect(finishRange(range({ keysOnly: true }), read).kvs.every((k) => k.value.length === 0)).toBe(true);
    expect(finishRange(range({ countOnly: true }), read)).toMatchObject({ kvs: [], count: 3n });
  });
  test("key-values read encoded are answered as they are", () => {
    const bytes = new Uint8Array([1, 2, 3]);
    const out = finishRange(range({ limit: 1n }), { kvs: [], count: 3n, revision: 9n, encoded: { bytes, count: 1, more: true, lastKey: b("a") } });
    expect(out).toMatchObject({ kvs: [], encodedKvs: bytes, more: true, count: 3n });
  });
});
