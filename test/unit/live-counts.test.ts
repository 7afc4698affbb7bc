// Counts of large ranges kept current from published revisions (mvcc/live-counts.ts).
import { describe, expect, test } from "bun:test";
import { KEPT, LiveCounts, PREFIXES, WORTH_KEEPING } from "../../src/mvcc/live-counts.ts";
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

  test(`at most ${KEPT} ranges, the least recently counted going first`, () => {
    const c = new LiveCounts();
    c.published(1n, []);
    const r = (i: number) => ({ start: b(`k${i}/`), end: b(`k${i}0`) });
    for (let i = 0; i <= KEPT; i++) c.learn(r(i), 1n, 2000n);
    expect(c.get(r(0))).toBeUndefined();
    expect(c.get(r(1))?.count).toBe(2000n);
    expect(c.get(r(KEPT))?.count).toBe(2000n);
  });
});

describe("counts from an empty keyspace", () => {
  const prefix = (p: string) => ({ start: b(p), end: b(p.slice(0, -1) + "0") });

  test("every '/'-ended prefix of up to four slashes is counted from creations and deletions", () => {
    const c = new LiveCounts();
    c.published(5n, []);
    c.startEmpty(5n);
    expect(c.get(prefix("/registry/pods/"))).toEqual({ revision: 5n, count: 0n });
    c.published(6n, [put("/registry/pods/ns-1/a", 1n, 6n), put("/registry/pods/ns-2/b", 1n, 6n), put("/registry/x.io/w/ns-1/c", 1n, 6n)]);
    c.published(7n, [put("/registry/pods/ns-1/a", 2n, 7n), put("other", 1n, 7n)]);
    expect(c.get(prefix("/"))?.count).toBe(3n);
    expect(c.get(prefix("/registry/"))?.count).toBe(3n);
    expect(c.get(prefix("/registry/pods/"))).toEqual({ revision: 7n, count: 2n });
    expect(c.get(prefix("/registry/pods/ns-1/"))?.count).toBe(1n);
    expect(c.get(prefix("/registry/x.io/w/"))?.count).toBe(1n);
    expect(c.get(prefix("/registry/services/"))?.count).toBe(0n);
    c.published(8n, [del("/registry/pods/ns-1/a", 8n)]);
    expect(c.get(prefix("/registry/pods/"))?.count).toBe(1n);
    expect(c.get(prefix("/registry/pods/ns-1/"))?.count).toBe(0n);
    // not a counted prefix: five slashes, no slash at the end, another end, a single key
    expect(c.get(prefix("/registry/x.io/w/ns-1/"))).toBeUndefined();
    expect(c.get(prefix("/registry/pods"))).toBeUndefined();
    expect(c.get({ start: b("/registry/pods/"), end: b("/registry/pods/ns-2/") })).toBeUndefined();
    expect(c.get({ start: b("/registry/pods/"), end: undefined })).toBeUndefined();
    expect(c.get({ start: b("/registry/pods/"), end: b("/registry/pods/\0") })).toBeUndefined();
  });

  test("not started at another revision than the newest, and dropped with changes not known as events", () => {
    const c = new LiveCounts();
    c.published(5n, []);
    c.startEmpty(4n);
    expect(c.get(prefix("/registry/"))).toBeUndefined();
    c.startEmpty(5n);
    expect(c.get(prefix("/registry/"))?.count).toBe(0n);
    c.lost(6n);
    expect(c.get(prefix("/registry/"))).toBeUndefined();
  });

  test(`given up past ${PREFIXES} prefixes`, () => {
    const c = new LiveCounts();
    c.published(1n, []);
    c.startEmpty(1n);
    // "/", "/p/" and one "/p/i/" each
    const events = Array.from({ length: PREFIXES - 2 }, (_, i) => put(`/p/${i}/k`, 1n, 2n));
    c.published(2n, events);
    expect(c.get(prefix("/p/"))?.count).toBe(BigInt(PREFIXES - 2));
    c.published(3n, [put(`/p/${PREFIXES}/k`, 1n, 3n)]);
    expect(c.get(prefix("/p/"))).toBeUndefined();
  });
});
