// One revision order (storage contract 1): every write transaction takes exactly one
// revision, the next one; reads report a revision at or above what they hold; concurrent
// writers — in one process or in several on one database — never lose or repeat one.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { BACKEND, client, covered, dec, delOp, enc, getOp, history, modIs, type Opened, openStore, putOp, shared, showEvent } from "./harness.ts";

let db: Opened;
let c: ReturnType<typeof client>;

describe.skipIf(!covered)(`revisions on ${BACKEND}`, () => {
  beforeAll(async () => {
    db = await openStore();
    c = client(db.store);
  });
  afterAll(() => db?.close());

  test("each write transaction takes one revision, the next; reads and no-ops take none", async () => {
    let r0 = db.store.revision;
    expect((await c.put("a", "1")).header.revision).toBe(r0 + 1n);
    // several writes in one txn: one revision, every event at it
    // (a put and a delete of one key in one txn etcd refuses before mvcc: api/checks.ts)
    const t = await c.txn([], [putOp("b", "1"), putOp("c", "1"), delOp("a")]);
    expect(t.header.revision).toBe(r0 + 2n);
    expect((await history(db.backend, r0 + 1n, r0 + 2n)).map(showEvent)).toEqual([
      `PUT a@${r0 + 1n}<-`,
      `PUT b@${r0 + 2n}<-`,
      `PUT c@${r0 + 2n}<-`,
      `DEL a@${r0 + 2n}<1@${r0 + 1n}`,
    ]);
    // a deleted key put again starts a new life
    expect((await c.put("a", "2")).header.revision).toBe(r0 + 3n);
    expect(await c.get("a")).toMatchObject({ version: 1n, createRevision: r0 + 3n, modRevision: r0 + 3n });
    r0++;
    // nothing written: no revision (a delete of nothing, a read-only txn, a failed compare with no failure ops)
    expect((await c.del("nothing-here")).header.revision).toBe(r0 + 2n);
    expect((await c.txn([], [getOp("a")])).header.revision).toBe(r0 + 2n);
    const failed = await c.txn([modIs("a", 0, 1n)], [putOp("a", "never")]);
    expect([failed.succeeded, failed.header.revision]).toEqual([false, r0 + 2n]);
    expect(db.store.revision).toBe(r0 + 2n);
    expect((await db.backend.revisions()).revision).toBe(r0 + 2n);
    expect((await c.range({ key: enc("a") })).header.revision).toBe(r0 + 2n);
  });

  test("concurrent writers in one process: every write acknowledged once, at its own revision, with no gap", async () => {
    const r0 = db.store.revision;
    // more than one group-commit batch (256), writes to the same keys and to different ones
    const n = 600;
    const acks = await Promise.all(Array.from({ length: n }, (_, i) => c.put(`w/${i % 37}`, String(i))));
    const revs = acks.map((a) => a.header.revision);
    expect(new Set(revs.map(String)).size).toBe(n);
    expect([...revs].sort((a, b) => (a < b ? -1 : 1))).toEqual(Array.from({ length: n }, (_, i) => r0 + 1n + BigInt(i)));
    // history holds each write once, at the revision it was acknowledged at, in order
    const evs = await history(db.backend, r0 + 1n, r0 + BigInt(n));
    expect(evs.map((e) => e.kv.modRevision)).toEqual(Array.from({ length: n }, (_, i) => r0 + 1n + BigInt(i)));
    const byRev = new Map(evs.map((e) => [e.kv.modRevision, `${dec(e.kv.key)}=${dec(e.kv.value)}`]));
    acks.forEach((a, i) => expect(byRev.get(a.header.revision)).toBe(`w/${i % 37}=${i}`));
    // each key's versions count its writes; the latest value is the last acknowledged
    const last = new Map<number, number>();
    acks.forEach((_, i) => last.set(i % 37, i));
    for (const [k, i] of last) {
      const kv = (await c.get(`w/${k}`))!;
      expect(dec(kv.value)).toBe(String(i));
      expect(kv.version).toBe(BigInt(acks.filter((_, j) => j % 37 === k).length));
    }
  });

  test("a range's header revision is at or above every mod revision in it, while others write", async () => {
    let writing = true;
    const writers = Array.from({ length: 3 }, async (_, w) => {
      for (let i = 0; writing; i++) await c.put(`h/${w}-${i % 20}`, String(i));
    });
    for (let i = 0; i < 100; i++) {
      const { header } = await c.put(`h/mine`, String(i));
      const r = await c.range({ key: enc("h/"), rangeEnd: enc("h0") });
      expect(r.header.revision >= header.revision).toBe(true);
      for (const kv of r.kvs) expect(kv.modRevision <= r.header.revision).toBe(true);
      expect(dec(r.kvs.find((kv) => dec(kv.key) === "h/mine")!.value)).toBe(String(i));
    }
    writing = false;
    await Promise.all(writers);
  });

  test.skipIf(!shared)("two processes on one database: disjoint revisions, no gap, no lost compare-and-swap", async () => {
    const other = await openStore(db.url);
    try {
      const c2 = client(other.store);
      await c.put("cas", "0");
      const r0 = (await db.backend.revisions()).revision;
      const incr = async (cl: typeof c): Promise<bigint> => {
        for (;;) {
          const cur = (await cl.get("cas"))!;
          const r = await cl.txn([modIs("cas", 0, cur.modRevision)], [putOp("cas", String(Number(dec(cur.value)) + 1))]);
          if (r.succeeded) return r.header.revision;
        }
      };
      const plain = (cl: typeof c, p: string) => Array.from({ length: 100 }, (_, i) => cl.put(`${p}/${i}`, "x").then((a) => a.header.revision));
      const revs = (await Promise.all([
        ...Array.from({ length: 40 }, (_, i) => incr(i % 2 ? c : c2)),
        ...plain(c, "p1"),
        ...plain(c2, "p2"),
      ]));
      expect(new Set(revs.map(String)).size).toBe(revs.length);
      expect(dec((await c.get("cas"))!.value)).toBe("40");
      expect(dec((await c2.get("cas"))!.value)).toBe("40");
      // the database's history: each revision once, consecutive, every acknowledged one among them
      const top = (await db.backend.revisions()).revision;
      const evs = await history(db.backend, r0 + 1n, top);
      const seen = [...new Set(evs.map((e) => e.kv.modRevision))];
      expect(seen).toEqual(Array.from({ length: Number(top - r0) }, (_, i) => r0 + 1n + BigInt(i)));
      expect(evs.length).toBe(seen.length);
      for (const r of revs) expect(seen).toContain(r);
      // and each process reads it the same
      expect((await history(other.backend, r0 + 1n, top)).map(showEvent)).toEqual(evs.map(showEvent));
    } finally {
      await other.close();
    }
  });
});
