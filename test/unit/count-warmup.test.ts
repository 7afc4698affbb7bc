// Counting the keyspace's large prefixes when a store opens (mvcc/count-warmup.ts).
import { describe, expect, test } from "bun:test";
import { warmCounts } from "../../src/mvcc/count-warmup.ts";
import { inRange } from "../../src/mvcc/keyrange.ts";
import { WORTH_KEEPING } from "../../src/mvcc/live-counts.ts";
import type { RangeQuery, RangeResult } from "../../src/mvcc/types.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** a read over sorted keys, recording what was counted and how many reads there were */
function keyspace(keys: string[]) {
  const sorted = [...keys].sort().map((k) => enc.encode(k));
  const counted: string[] = [];
  let reads = 0;
  const read = async (q: RangeQuery): Promise<RangeResult> => {
    reads++;
    const inside = sorted.filter((k) => inRange(q.range, k));
    if (q.countOnly) counted.push(`${dec.decode(q.range.start)} ${inside.length}`);
    const kvs = q.countOnly ? [] : inside.slice(0, q.limit).map((key) => ({ key, value: new Uint8Array(0), createRevision: 1n, modRevision: 1n, version: 1n, lease: 0n }));
    return { kvs, count: BigInt(inside.length), revision: 7n };
  };
  return { read, counted, reads: () => reads };
}

const many = (n: number, key: (i: number) => string) => Array.from({ length: n }, (_, i) => key(i));
const N = Number(WORTH_KEEPING);

describe("counting the large prefixes at start", () => {
  test("looks into prefixes of at least WORTH_KEEPING keys, three levels deep, and leaves levels of keys without '/'", async () => {
    const ks = keyspace([
      ...many(N, (i) => `/registry/pods/ns-1/p${i}`),
      ...many(10, (i) => `/registry/pods/ns-2/p${i}`),
      ...many(N, (i) => `/registry/nodes/n${String(i).padStart(5, "0")}`),
      ...many(5, (i) => `/registry/services/ns-1/s${i}`),
      "/registry/x.io/widgets/ns-1/w1",
      "other",
    ]);
    let empty = false;
    await warmCounts(ks.read, () => false, () => (empty = true));
    expect(empty).toBe(false);
    expect(ks.counted).toEqual([
      `/registry/ ${2 * N + 16}`,
      `/registry/nodes/ ${N}`,
      `/registry/pods/ ${N + 10}`,
      `/registry/pods/ns-1/ ${N}`,
      `/registry/pods/ns-2/ 10`,
      `/registry/services/ 5`,
      `/registry/x.io/ 1`,
    ]);
    // a seek and a count per prefix, and a few seeks among the nodes before leaving them
    expect(ks.reads()).toBeLessThan(30);
  });

  test("an empty keyspace is said to be so, at the revision it was read at", async () => {
    const ks = keyspace([]);
    let empty: bigint | undefined;
    await warmCounts(ks.read, () => false, (rev) => (empty = rev));
    expect(empty).toBe(7n);
    expect(ks.counted).toEqual([]);
  });

  test("stops when told", async () => {
    const ks = keyspace(many(N, (i) => `/a/${i}/k`));
    await warmCounts(ks.read, () => ks.reads() >= 3, () => {});
    expect(ks.reads()).toBe(3);
  });
});
