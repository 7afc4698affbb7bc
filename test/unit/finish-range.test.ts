// Range post-processing (finishRange, rangeFetch, rangeQuery in src/mvcc/range.ts): etcd's
// revision filters, sort orders, limit with `more`, keys-only and count-only, and what a
// read must fetch for them.
import { describe, expect, test } from "bun:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { RangeRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { finishRange, rangeFetch, rangeQuery } from "../../src/mvcc/range.ts";
import type { KeyValue } from "../../src/mvcc/types.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const req = (init: MessageInitShape<typeof RangeRequestSchema> = {}) => create(RangeRequestSchema, { key: enc("a"), rangeEnd: enc("z"), ...init });
const kv = (key: string, value: string, create: bigint, mod: bigint, version: bigint): KeyValue => ({
  key: enc(key), value: enc(value), createRevision: create, modRevision: mod, version, lease: 0n,
});
// in key order, as a backend returns them
const kvs = [
  kv("a", "zz", 2n, 9n, 3n),
  kv("b", "aa", 5n, 5n, 1n),
  kv("c", "mm", 3n, 7n, 2n),
  kv("d", "bb", 8n, 8n, 1n),
];
const keys = (init: MessageInitShape<typeof RangeRequestSchema>) => finishRange(req(init), { kvs, count: 4n, revision: 10n }).kvs.map((k) => dec(k.key));

const SORT = { none: 0, ascend: 1, descend: 2 };
/** the smallest limit that is none */
const NO_LIMIT = 2n ** 31n;
/** whether a read for the request may come back encoded (nothing to do to it but the cut) */
const isPlainRange = (r: ReturnType<typeof req>) => rangeQuery(r, { encodedKvs: true }).encode !== undefined;
const TARGET = { key: 0, version: 1, create: 2, mod: 3, value: 4 };

describe("finishRange", () => {
  test("no options: the fetched key-values, the count given and the header revision", () => {
    const out = finishRange(req(), { kvs, count: 4n, revision: 10n });
    expect(out.kvs).toEqual(kvs);
    expect([out.more, out.count, out.header.revision]).toEqual([false, 4n, 10n]);
  });

  test("revision filters prune key-values but leave the count", () => {
    expect(keys({ minModRevision: 7n })).toEqual(["a", "c", "d"]);
    expect(keys({ maxModRevision: 7n })).toEqual(["b", "c"]);
    expect(keys({ minCreateRevision: 3n, maxCreateRevision: 5n })).toEqual(["b", "c"]);
    expect(keys({ minModRevision: 6n, maxModRevision: 8n, minCreateRevision: 4n })).toEqual(["d"]);
    expect(finishRange(req({ minModRevision: 100n }), { kvs, count: 4n, revision: 10n }).count).toBe(4n);
  });

  test("sort by each target, in each order; an order without a target sorts by key", () => {
    expect(keys({ sortOrder: SORT.descend })).toEqual(["d", "c", "b", "a"]);
    expect(keys({ sortOrder: SORT.ascend })).toEqual(["a", "b", "c", "d"]);
    expect(keys({ sortTarget: TARGET.value, sortOrder: SORT.ascend })).toEqual(["b", "d", "c", "a"]);
    expect(keys({ sortTarget: TARGET.create, sortOrder: SORT.descend })).toEqual(["d", "b", "c", "a"]);
    expect(keys({ sortTarget: TARGET.mod, sortOrder: SORT.ascend })).toEqual(["b", "c", "d", "a"]);
    // equal versions keep key order (a stable sort)
    expect(keys({ sortTarget: TARGET.version, sortOrder: SORT.descend })).toEqual(["a", "c", "b", "d"]);
    // a target with no order sorts ascending, as etcd does
    expect(keys({ sortTarget: TARGET.mod })).toEqual(["b", "c", "d", "a"]);
  });

  test("a limit cuts after sorting and says there are more", () => {
    const out = finishRange(req({ limit: 2n, sortTarget: TARGET.mod, sortOrder: SORT.descend }), { kvs, count: 4n, revision: 10n });
    expect([out.kvs.map((k) => dec(k.key)), out.more, out.count]).toEqual([["a", "d"], true, 4n]);
    expect(finishRange(req({ limit: 4n }), { kvs, count: 4n, revision: 10n }).more).toBe(false);
    // a limit after filters counts what is left
    expect(finishRange(req({ limit: 2n, minModRevision: 8n }), { kvs, count: 4n, revision: 10n }).more).toBe(false);
    // MaxInt64 and anything from 2^31 is no limit
    for (const limit of [NO_LIMIT, 2n ** 63n - 1n]) expect(finishRange(req({ limit }), { kvs, count: 4n, revision: 10n }).kvs.length).toBe(4);
  });

  test("keys-only drops values (also after sorting by them); count-only drops key-values", () => {
    const out = finishRange(req({ keysOnly: true, sortTarget: TARGET.value }), { kvs, count: 4n, revision: 10n });
    expect(out.kvs.map((k) => [dec(k.key), k.value.length, k.modRevision])).toEqual([["b", 0, 5n], ["d", 0, 8n], ["c", 0, 7n], ["a", 0, 9n]]);
    // the fetched key-values are not changed
    expect(dec(kvs[0]!.value)).toBe("zz");
    const only = finishRange(req({ countOnly: true, limit: 1n }), { kvs, count: 4n, revision: 10n });
    expect([only.kvs, only.count]).toEqual([[], 4n]);
  });
});

describe("what a range fetches", () => {
  test("a plain range fetches one more than its limit, to tell whether there are more", () => {
    expect(rangeFetch(req({ limit: 5n }))).toEqual({ limit: 6, keysOnly: false });
    expect(rangeFetch(req())).toEqual({ limit: 0, keysOnly: false });
    expect(rangeFetch(req({ limit: NO_LIMIT }))).toEqual({ limit: 0, keysOnly: false });
  });

  test("sorted or filtered ranges fetch everything; sorting by value needs the values", () => {
    expect(rangeFetch(req({ limit: 5n, sortOrder: SORT.descend })).limit).toBe(0);
    expect(rangeFetch(req({ limit: 5n, maxCreateRevision: 3n })).limit).toBe(0);
    expect(rangeFetch(req({ keysOnly: true }))).toEqual({ limit: 0, keysOnly: true });
    expect(rangeFetch(req({ keysOnly: true, sortTarget: TARGET.value }))).toEqual({ limit: 0, keysOnly: false });
  });

  test("only unfiltered ranges in key order may be encoded where they are read", () => {
    expect(isPlainRange(req({ limit: 3n }))).toBe(true);
    expect(isPlainRange(req({ sortOrder: SORT.ascend }))).toBe(true);
    expect(isPlainRange(req({ keysOnly: true }))).toBe(true);
    expect(isPlainRange(req({ sortOrder: SORT.descend }))).toBe(false);
    expect(isPlainRange(req({ sortTarget: TARGET.mod }))).toBe(false);
    expect(isPlainRange(req({ minModRevision: 1n }))).toBe(false);
    expect(isPlainRange(req({ countOnly: true }))).toBe(false);
  });
});
