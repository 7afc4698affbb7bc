// History for watchers and other processes (Backend.events): pages in revision order that
// never split a revision, whatever the event or byte bound, filtered by range, with the
// previous versions etcd's watch reports.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { BACKEND, client, covered, dec, delOp, enc, history, type Opened, openStore, putOp, showEvent } from "./harness.ts";
import type { Event, Rev } from "../../src/mvcc/types.ts";

let db: Opened;
let c: ReturnType<typeof client>;
/** the revisions written here, and how many events each */
let first: Rev, last: Rev;
const sizes = [1, 3, 1, 7, 2, 5, 1, 4];

describe.skipIf(!covered)(`history on ${BACKEND}`, () => {
  beforeAll(async () => {
    db = await openStore();
    c = client(db.store);
    first = db.store.revision + 1n;
    // revisions of several events each; values of 1 kB so byte bounds fall mid-revision
    const big = "v".repeat(1000);
    for (const [r, n] of sizes.entries()) {
      await c.txn([], Array.from({ length: n }, (_, i) => putOp(`k/${r}/${i}`, big)));
    }
    // a key changed twice more and deleted: previous versions in its events
    await c.put("k/0/0", "second");
    await c.txn([], [delOp("k/1/", "k/1/\xff")]);
    last = db.store.revision;
  });
  afterAll(() => db?.close());

  /** every page from `from` to `to` with the given bounds: checks each one is whole revisions */
  async function walk(limit: number, bytes?: number): Promise<{ events: Event[]; pages: number }> {
    const all = await history(db.backend, first, last);
    const out: Event[] = [];
    let from = first, pages = 0;
    while (from <= last) {
      const page = await db.backend.events(from, last, limit, bytes === undefined ? undefined : { bytes });
      pages++;
      expect(page.through >= from).toBe(true); // progress, even when one revision exceeds the bounds
      expect(page.through <= last).toBe(true);
      // exactly the events of revisions from..through: none missing, none beyond
      expect(page.events.map(showEvent)).toEqual(all.filter((e) => e.kv.modRevision >= from && e.kv.modRevision <= page.through).map(showEvent));
      out.push(...page.events);
      from = page.through + 1n;
    }
    return { events: out, pages };
  }

  test("one page holds every event in revision order, each with its previous version", async () => {
    const evs = await history(db.backend, first, last);
    expect(evs.length).toBe(sizes.reduce((a, b) => a + b) + 1 + 3);
    const revs = evs.map((e) => e.kv.modRevision);
    expect(revs).toEqual([...revs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    expect(new Set(revs.map(String)).size).toBe(sizes.length + 2);
    // within a revision, events keep the order of the txn's operations
    expect(evs.filter((e) => e.kv.modRevision === first + 3n).map((e) => dec(e.kv.key))).toEqual(Array.from({ length: 7 }, (_, i) => `k/3/${i}`));
    expect(evs.slice(-4).map(showEvent)).toEqual([
      `PUT k/0/0@${last - 1n}<${"v".repeat(1000)}@${first}`,
      `DEL k/1/0@${last}<${"v".repeat(1000)}@${first + 1n}`,
      `DEL k/1/1@${last}<${"v".repeat(1000)}@${first + 1n}`,
      `DEL k/1/2@${last}<${"v".repeat(1000)}@${first + 1n}`,
    ]);
    // a put's event carries the new version; a delete's a tombstone (etcd's: only key and revision)
    expect(evs.at(-4)!.kv).toMatchObject({ version: 2n, createRevision: first, modRevision: last - 1n });
    expect(evs.at(-1)!.kv).toMatchObject({ version: 0n, createRevision: 0n, modRevision: last, lease: 0n });
    expect(evs.at(-1)!.kv.value.length).toBe(0);
  });

  test("pages bounded by events never split a revision", async () => {
    for (const limit of [1, 2, 3, 4, 6, 100]) {
      const { events, pages } = await walk(limit);
      expect(events.length).toBe((await history(db.backend, first, last)).length);
      if (limit === 1) expect(pages).toBeGreaterThanOrEqual(sizes.length);
    }
  });

  test("pages bounded by bytes end between revisions", async () => {
    // each event is about 1 kB: a bound of 2.5 kB falls inside most revisions
    const { pages } = await walk(1000, 2500);
    expect(pages).toBeGreaterThan(3);
  });

  test("a page for one range holds only its events and still covers every revision", async () => {
    const range = { start: enc("k/3/"), end: enc("k/3/\xff") };
    const page = await db.backend.events(first, last, 100, { range });
    expect(page.through).toBe(last);
    expect(page.events.map((e) => dec(e.kv.key))).toEqual(Array.from({ length: 7 }, (_, i) => `k/3/${i}`));
    const none = await db.backend.events(first, last, 100, { range: { start: enc("nothing/"), end: enc("nothing0") } });
    expect([none.events.length, none.through]).toEqual([0, last]);
  });

  test("previous versions only when asked", async () => {
    const page = await db.backend.events(last - 1n, last, 100, { prevKv: false });
    expect(page.events.length).toBe(4);
    expect(page.events.map((e) => e.prevKv)).toEqual([undefined, undefined, undefined, undefined]);
  });

  test("history from a revision nobody wrote yet is empty", async () => {
    const page = await db.backend.events(last + 1n, last + 5n, 100);
    expect(page.events).toEqual([]);
    expect(page.through <= last + 5n).toBe(true);
  });
});
