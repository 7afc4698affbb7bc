// Watch responses stay under the stream's byte limit: split between revisions, a single
// larger revision fragmented only when the watcher asked for it, as etcd does.
import { describe, expect, test } from "bun:test";
import { responseSize, splitResponse } from "../../src/api/watch-split.ts";
import { type Event, PUT } from "../../src/mvcc/types.ts";
import type { WatchResponseOut } from "../../src/keyspace/contract.ts";

const KB = 1024;

function event(rev: number, bytes: number): Event {
  return { type: PUT, kv: { key: new TextEncoder().encode(`k${rev}`), value: new Uint8Array(bytes), createRevision: 1n, modRevision: BigInt(rev), version: 1n, lease: 0n } };
}

function response(events: Event[]): WatchResponseOut {
  return { header: { revision: 99n }, watchId: 7n, events };
}

const revisionsOf = (r: WatchResponseOut) => r.events.map((e) => Number(e.kv.modRevision));

describe("watch responses bounded in bytes", () => {
  test("a small response goes as it is", () => {
    const r = response([event(1, 10), event(2, 10)]);
    expect([...splitResponse(r, 1000, false)]).toEqual([r]);
  });

  test("a catch-up page is split between revisions, none above the limit", () => {
    // 100 revisions of 100 KB: 10 MB, in parts of at most 1.5 MiB
    const r = response(Array.from({ length: 100 }, (_, i) => event(i + 1, 100 * KB)));
    const parts = [...splitResponse(r, 1.5 * 1024 * KB, false)];
    expect(parts.length).toBeGreaterThan(6);
    for (const p of parts) {
      expect(responseSize(p)).toBeLessThanOrEqual(1.5 * 1024 * KB);
      expect(p.header.revision).toBe(99n);
      expect(p.watchId).toBe(7n);
      expect((p as { fragment?: boolean }).fragment).toBeUndefined();
    }
    expect(parts.flatMap(revisionsOf)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  test("a revision is never split between parts without fragmenting, even when larger than the limit", () => {
    // revision 2 is a transaction of three 600 KB puts
    const r = response([event(1, 600 * KB), event(2, 600 * KB), event(2, 600 * KB), event(2, 600 * KB), event(3, 10)]);
    const parts = [...splitResponse(r, 1024 * KB, false)];
    expect(parts.map(revisionsOf)).toEqual([[1], [2, 2, 2], [3]]);
  });

  test("a watcher that asked for fragments gets the large revision in fragments", () => {
    const r = response([event(1, 600 * KB), event(2, 600 * KB), event(2, 600 * KB), event(2, 600 * KB), event(3, 10)]);
    const parts = [...splitResponse(r, 1024 * KB, true)];
    expect(parts.map(revisionsOf)).toEqual([[1], [2], [2], [2], [3]]);
    expect(parts.map((p) => p.fragment ?? false)).toEqual([false, true, true, false, false]);
  });
});
