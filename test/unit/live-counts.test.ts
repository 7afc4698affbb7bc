// Counts of large ranges kept current from published revisions (mvcc/live-counts.ts).
import { describe, expect, test } from "bun:test";
import { LiveCounts, WORTH_KEEPING } from "../../src/mvcc/live-counts.ts";
import { DELETE, type Event, PUT } from "../../src/mvcc/types.ts";

const b = (s: string) => new TextEncoder().encode(s);
const range = { start: b("r/"), end: b("r0") };
const put = (key: string, version: bigint, rev: bigint): Event => ({
  type: PUT,
  kv: { key: b(key), value: b("v"), createRevision: rev, modRevision: rev, version, lease: 0n },
});
const del = (key: string, rev: bigint): Event => ({
  type: DELETE,
  kv: { key: b(key), value: new Uint8Array(0), createRevision: 0n, modRevision: rev, version: 0n, lease: 0n },
});

describe("counts kept from published revisions", () => {
  test("creations in the range add, deletions take away, updates and keys outside change nothing", () => {
    const c = new LiveCounts();
    c.published(10n, []);
    c.learn(range, 10n, 5000n);
    expect(c.get(range)).toEqual({ revision: 10n, count: 5000n });
    c.published(11n, [put("r/new", 1n, 11n), put("r/old", 4n, 11n), put("s/new", 1n, 11n), put("r0", 1n, 11n)]);
    expect(c.get(range)).toEqual({ revision: 11n, count: 5001n });
    c.published(12n, [del("r/a", 12n), del("r/b", 12n), del("q", 12n)]);
    expect(c.get(range)).toEqual({ revision: 12n, count: 4999n });
    // a revision without events (another backend's, or only advanced) moves the revision alone
    c.published(15n, []);
    expect(c.get(range)).toEqual({ revision: 15n, count: 4999n });
  });

  test("a count made at another revision than the newest published, or a small one, is not kept", () => {
    const c = new LiveCounts();
    c.published(10n, []);
    c.learn(range, 9n, 5000n);
    c.learn(range, 11n, 5000n);
    expect(c.get(range)).toBeUndefined();
    c.learn(range, 10n, WORTH_KEEPING - 1n);
    expect(c.get(range)).toBeUndefined();
    c.learn({ start: b("r/"), end: undefined }, 10n, WORTH_KEEPING);
    c.published(11n, [put("zzz", 1n, 11n)]);
    expect(c.get({ start: b("r/"), end: undefined })).toEqual({ revision: 11n, count: WORTH_KEEPING + 1n });
  });

  test("changes not known as events drop every count", () => {
    const c = new LiveCounts();
    c.published(10n, []);
    c.learn(range, 10n, 5000n);
    c.lost(12n);
    expect(c.get(range)).toBeUndefined();
    c.learn(range, 12n, 4000n);
    expect(c.get(range)).toEqual({ revision: 12n, count: 4000n });
  });

  test("at most 16 ranges, the least recently counted going first", () => {
    const c = new LiveCounts();
    c.published(1n, []);
    const r = (i: number) => ({ start: b(`k${i}/`), end: b(`k${i}0`) });
    for (let i = 0; i < 17; i++) c.learn(r(i), 1n, 2000n);
    expect(c.get(r(0))).toBeUndefined();
    expect(c.get(r(1))?.count).toBe(2000n);
    expect(c.get(r(16))?.count).toBe(2000n);
  });
});
