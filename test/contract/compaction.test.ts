// Compaction as etcd's: reads at or after the compact revision answer as before it, reads
// below it fail as compacted; each key's version live at the compact revision survives
// (also as the previous version of later events); a key deleted at or before it is gone
// with its tombstone, and put again starts a new life. The state survives reopening.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { CompactionRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { BACKEND, client, covered, failure, getOp, history, type Opened, openStore, showEvent } from "./harness.ts";
import type { Rev } from "../../src/mvcc/types.ts";

const COMPACTED = "etcdserver: mvcc: required revision has been compacted";
const FUTURE = "etcdserver: mvcc: required revision is a future revision";

let db: Opened;
let c: ReturnType<typeof client>;
/** r(n): the n-th revision written here */
let base: Rev;
const r = (n: number) => base + BigInt(n);
const compact = (revision: Rev, physical = true) => db.store.compact(create(CompactionRequestSchema, { revision, physical }));

describe.skipIf(!covered)(`compaction on ${BACKEND}`, () => {
  beforeAll(async () => {
    db = await openStore();
    c = client(db.store);
    base = db.store.revision;
    await c.put("a", "a1"); // r1
    await c.put("a", "a2"); // r2
    await c.put("b", "b1"); // r3
    await c.del("b"); // r4: b's tombstone, at or before the compact revision
    await c.put("c", "c1"); // r5
    await c.put("d", "d1"); // r6 = the compact revision
    await c.put("a", "a3"); // r7
    await c.del("c"); // r8: c dies after the compact revision
    await c.put("e", "e1"); // r9
  });
  afterAll(() => db?.close());

  test("reads at and after the compact revision answer as before; below it, compacted", async () => {
    const at = async (n: number) => [await c.list(""), ...(await Promise.all([6, 7, 8, 9].filter((m) => m >= n).map((m) => c.list("", undefined, r(m)))))];
    const counts = async () => Promise.all([6, 7, 8, 9].map(async (m) => (await c.range({ key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]), revision: r(m), countOnly: true })).count));
    const before = await at(6);
    const countsBefore = await counts();
    expect(before[1]).toEqual([`a=a2@${r(2)}/v2/c${r(1)}`, `c=c1@${r(5)}/v1/c${r(5)}`, `d=d1@${r(6)}/v1/c${r(6)}`]);
    expect((await compact(r(6))).header.revision).toBe(r(9));
    expect(db.store.compactRevision).toBe(r(6));
    expect((await db.backend.revisions()).compactRevision).toBe(r(6));
    expect(await at(6)).toEqual(before);
    expect(await counts()).toEqual(countsBefore);
    expect(countsBefore).toEqual([3n, 3n, 2n, 3n]);
    for (const n of [1, 4, 5]) expect(await failure(() => c.list("", undefined, r(n)))).toBe(COMPACTED);
    // a txn reading below it fails as a whole, writing nothing
    expect(await failure(() => c.txn([], [getOp("a", r(5))]))).toBe(COMPACTED);
    expect(db.store.revision).toBe(r(9));
  });

  test("history after the compact revision keeps the previous versions it names", async () => {
    expect((await history(db.backend, r(7), r(9))).map(showEvent)).toEqual([
      `PUT a@${r(7)}<a2@${r(2)}`,
      `DEL c@${r(8)}<c1@${r(5)}`,
      `PUT e@${r(9)}<-`,
    ]);
    // a page starting below it tells where the history now begins (what it holds below is partial)
    const page = await db.backend.events(r(1), r(9), 100);
    expect(page.compactRevision).toBe(r(6));
    expect(page.events.filter((e) => e.kv.modRevision > r(6)).map(showEvent)).toEqual((await history(db.backend, r(7), r(9))).map(showEvent));
  });

  test("compacting again at or below it, or above the store's revision, is refused", async () => {
    expect(await failure(() => compact(r(6)))).toBe(COMPACTED);
    expect(await failure(() => compact(r(3)))).toBe(COMPACTED);
    expect(await failure(() => compact(r(10)))).toBe(FUTURE);
    expect(db.store.compactRevision).toBe(r(6));
  });

  test("a key deleted before compacting, put again, starts a new life", async () => {
    const { header } = await c.put("b", "b2"); // r10
    expect(await c.get("b")).toMatchObject({ version: 1n, createRevision: header.revision, modRevision: header.revision });
    // and compacting at the newest revision keeps exactly the live keys
    await compact(r(10));
    expect(await c.list("")).toEqual([`a=a3@${r(7)}/v3/c${r(1)}`, `b=b2@${r(10)}/v1/c${r(10)}`, `d=d1@${r(6)}/v1/c${r(6)}`, `e=e1@${r(9)}/v1/c${r(9)}`]);
    expect(await c.list("", undefined, r(10))).toEqual(await c.list(""));
    expect(await failure(() => c.list("", undefined, r(9)))).toBe(COMPACTED);
    // a live key's next write continues its version
    await c.put("a", "a4");
    expect(await c.get("a")).toMatchObject({ version: 4n, createRevision: r(1) });
  });

  test("the state survives reopening the database", async () => {
    const before = await c.list("");
    const top = db.store.revision;
    db = await db.reopen();
    c = client(db.store);
    expect(db.store.revision).toBe(top);
    expect(db.store.compactRevision).toBe(r(10));
    expect(await c.list("")).toEqual(before);
    expect(await failure(() => c.list("", undefined, r(9)))).toBe(COMPACTED);
    expect((await c.put("f", "f1")).header.revision).toBe(top + 1n);
  });
});
