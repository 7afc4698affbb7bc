// A Range with selectors over any keyspace (src/keyspace/selected-range.ts), on a keyspace
// made of a sorted array: several of its pages per request, limit/more/count over matches,
// every page read at one revision, the plain range's options kept.
import { describe, expect, test } from "bun:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type RangeRequest, RangeRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Keyspace } from "../../src/keyspace/contract.ts";
import { selectedRange } from "../../src/keyspace/selected-range.ts";
import { compareBytes, toKeyRange } from "../../src/mvcc/keyrange.ts";
import { finishRange } from "../../src/mvcc/range.ts";
import type { KeyValue } from "../../src/mvcc/types.ts";
import { parseSelection } from "../../src/selectors/index.ts";
import { asJson, asProtobuf, encrypted } from "../support/k8s-objects.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

// 1000 pods; every 7th is "web", every 50th is encrypted
const kvs: KeyValue[] = [];
for (let i = 0; i < 1000; i++) {
  const name = `p${String(i).padStart(4, "0")}`;
  const o = { apiVersion: "v1", kind: "Pod", name, namespace: "a", labels: { app: i % 7 ? "db" : "web" } };
  const value = i % 50 === 49 ? encrypted(name) : i % 2 ? asJson(o) : asProtobuf(o);
  kvs.push({ key: enc(`/registry/pods/a/${name}`), value, createRevision: BigInt(i + 1), modRevision: BigInt(i + 1), version: 1n, lease: 0n });
}
const wanted = kvs.filter((_, i) => i % 7 === 0 || i % 50 === 49).map((kv) => dec(kv.key));

/** a keyspace answering from the array, as etcd would; it records what it was asked */
function member(asked: RangeRequest[]): Keyspace {
  return {
    range: async (r: RangeRequest) => {
      asked.push(r);
      const range = toKeyRange(r.key, r.rangeEnd);
      const inRange = kvs.filter((kv) => compareBytes(kv.key, range.start) >= 0 && (range.end === undefined || compareBytes(kv.key, range.end) < 0));
      return finishRange(r, { kvs: inRange, count: BigInt(inRange.length), revision: 5000n });
    },
  } as unknown as Keyspace;
}

const req = (init: MessageInitShape<typeof RangeRequestSchema> = {}) =>
  create(RangeRequestSchema, { key: enc("/registry/pods/"), rangeEnd: enc("/registry/pods0"), ...init });

describe("selected range", () => {
  const selection = parseSelection("app=web", "")!;
  test("reads every page at the first one's revision; count and more over matches", async () => {
    const asked: RangeRequest[] = [];
    const out = await selectedRange(member(asked), req({ limit: 10n }), selection);
    expect(out.kvs.map((kv) => dec(kv.key))).toEqual(wanted.slice(0, 10));
    expect(out.more).toBe(true);
    expect(out.count).toBe(BigInt(wanted.length));
    expect(out.header.revision).toBe(5000n);
    expect(asked.length).toBe(4); // 1000 keys in pages of 256
    expect(asked.map((r) => r.revision)).toEqual([0n, 5000n, 5000n, 5000n]);
    expect(asked.every((r) => r.labelSelector === "" && !r.keysOnly && !r.countOnly)).toBe(true);
  });
  test("an asked revision is kept for every page; no limit; count only; keys only", async () => {
    const asked: RangeRequest[] = [];
    const all = await selectedRange(member(asked), req({ revision: 42n }), selection);
    expect(asked.every((r) => r.revision === 42n)).toBe(true);
    expect(all.kvs.map((kv) => dec(kv.key))).toEqual(wanted);
    expect(all.more).toBe(false);
    const counted = await selectedRange(member([]), req({ countOnly: true }), selection);
    expect([counted.kvs.length, counted.count]).toEqual([0, BigInt(wanted.length)]);
    const keysOnly = await selectedRange(member([]), req({ keysOnly: true, limit: 3n }), selection);
    expect(keysOnly.kvs.map((kv) => [dec(kv.key), kv.value.length])).toEqual(wanted.slice(0, 3).map((k) => [k, 0]));
  });
  test("sorted by another target, and revision windows, over matches", async () => {
    const desc = await selectedRange(member([]), req({ sortOrder: 2, sortTarget: 3, limit: 4n }), selection);
    expect(desc.kvs.map((kv) => dec(kv.key))).toEqual([...wanted].reverse().slice(0, 4));
    expect([desc.more, desc.count]).toEqual([true, BigInt(wanted.length)]);
    const window = await selectedRange(member([]), req({ minModRevision: 500n, maxModRevision: 600n }), selection);
    const inWindow = kvs.filter((kv, i) => kv.modRevision >= 500n && kv.modRevision <= 600n && (i % 7 === 0 || i % 50 === 49)).map((kv) => dec(kv.key));
    expect(window.kvs.map((kv) => dec(kv.key))).toEqual(inWindow);
    // as etcd's, the count is the range's before the window
    expect(window.count).toBe(BigInt(wanted.length));
  });
  test("a page boundary on the limit: more is told by a later page's match", async () => {
    const exact = await selectedRange(member([]), req({ limit: BigInt(wanted.length) }), selection);
    expect([exact.kvs.length, exact.more]).toEqual([wanted.length, false]);
    const oneLess = await selectedRange(member([]), req({ limit: BigInt(wanted.length - 1) }), selection);
    expect([oneLess.kvs.length, oneLess.more]).toEqual([wanted.length - 1, true]);
  });
});
