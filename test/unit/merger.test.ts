// CommitMerger (src/router/merger.ts): several backends' commit streams become one
// revision order; a revision is released once every backend is closed at it; laggards
// are asked to advance while commits wait.
import { describe, expect, test } from "bun:test";
import { CommitMerger } from "../../src/router/merger.ts";
import type { Committed } from "../../src/mvcc/store.ts";
import type { Event, Rev } from "../../src/mvcc/types.ts";

const ev = (key: string, rev: Rev): Event => ({
  type: 0,
  kv: { key: new TextEncoder().encode(key), value: new Uint8Array(0), createRevision: rev, modRevision: rev, version: 1n, lease: 0n },
});
const commit = (rev: Rev, ...keys: string[]): Committed => ({ revision: rev, events: keys.map((k) => ev(k, rev)) });

/** a merger over backends at the given revisions, recording what it releases and asks for */
function merger(initial: Rev[]) {
  const released: string[] = [];
  const advances: string[] = [];
  const m = new CommitMerger(initial, (i, target) => advances.push(`${i}->${target}`));
  m.onRelease((c) => released.push(`${c.revision}:${c.events.map((e) => new TextDecoder().decode(e.kv.key)).join(",")}`));
  return { m, released, advances };
}

describe("CommitMerger", () => {
  test("starts closed at the lowest backend revision; with no backend at 0", () => {
    expect(merger([10n, 7n, 12n]).m.revision).toBe(7n);
    expect(merger([]).m.revision).toBe(0n);
    const { m } = merger([10n, 7n, 12n]);
    expect([m.newest, m.knownOf(0), m.knownOf(1), m.knownOf(2)]).toEqual([12n, 10n, 7n, 12n]);
  });

  test("one backend: every commit is released at once, in order", () => {
    const { m, released, advances } = merger([4n]);
    m.commit(0, commit(5n, "a"));
    m.commit(0, commit(6n, "b", "c"));
    expect(released).toEqual(["5:a", "6:b,c"]);
    expect(m.revision).toBe(6n);
    expect(advances).toEqual([]);
  });

  test("a commit waits until every backend is closed at its revision, and the laggard is advanced", () => {
    const { m, released, advances } = merger([10n, 10n]);
    m.commit(0, commit(12n, "a"));
    expect(released).toEqual([]);
    expect(m.revision).toBe(10n);
    expect(advances).toEqual(["1->12"]);
    // backend 1 commits below it: released first, and 12 still waits for backend 1 to pass it
    m.commit(1, commit(11n, "b"));
    expect(released).toEqual(["11:b"]);
    expect(m.revision).toBe(11n);
    // the advance answered: backend 1 is closed at 13, with nothing to release there
    m.commit(1, commit(13n));
    expect(released).toEqual(["11:b", "12:a"]);
    expect(m.revision).toBe(12n);
    expect(m.newest).toBe(13n);
  });

  test("released revisions only grow, across interleaved backends", () => {
    const { m, released } = merger([0n, 0n, 0n]);
    const order: Array<[number, Rev]> = [[0, 3n], [2, 5n], [1, 1n], [1, 4n], [0, 6n], [2, 8n], [1, 7n], [0, 9n], [1, 10n]];
    for (const [i, r] of order) m.commit(i, commit(r, `k${r}`));
    const revs = released.map((s) => BigInt(s.split(":")[0]!));
    expect(revs).toEqual([...revs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    // every commit with events released exactly once, once all are closed beyond it
    expect(released.filter((s) => !s.endsWith(":"))).toEqual(["1:k1", "3:k3", "4:k4", "5:k5", "6:k6", "7:k7", "8:k8"]);
    expect(m.revision).toBe(8n);
  });

  test("commits of one revision from two backends are released together", () => {
    const { m, released } = merger([1n, 1n]);
    m.commit(0, commit(2n, "a"));
    m.commit(1, commit(2n, "b"));
    expect(released).toEqual(["2:a,b"]);
  });

  test("a commit at or below what a backend already published is ignored", () => {
    const { m, released } = merger([5n, 5n]);
    m.commit(0, commit(5n, "old"));
    m.commit(0, commit(7n, "a"));
    m.commit(0, commit(6n, "late"));
    m.commit(1, commit(8n));
    expect(released).toEqual(["7:a"]);
    expect(m.knownOf(0)).toBe(7n);
  });

  test("a closed revision without events is announced as the new revision", () => {
    const { m, released } = merger([3n, 3n]);
    m.commit(0, commit(5n));
    m.commit(1, commit(6n));
    expect(released).toEqual(["5:"]);
    expect(m.revision).toBe(5n);
  });

  test("nothing waiting: no backend is advanced", () => {
    const { m, advances, released } = merger([3n, 3n]);
    m.commit(0, commit(9n)); // only raised its revision
    expect(advances).toEqual([]);
    expect(released).toEqual([]);
    expect(m.revision).toBe(3n);
  });
});
