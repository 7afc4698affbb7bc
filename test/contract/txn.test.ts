// Atomic, isolated transactions (storage contract 3) in group commit: a transaction that
// fails after writing rolls its whole batch back (nothing of it is seen, no revision is
// used); one refused before writing fails alone; compares see the state before the txn.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { PutRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { BACKEND, client, covered, dec, delOp, enc, getOp, history, modIs, type Opened, openStore, putOp, valueIs } from "./harness.ts";
import type { KeyValue } from "../../src/mvcc/types.ts";

let db: Opened;
let c: ReturnType<typeof client>;

const putReq = (key: string, value: string) => create(PutRequestSchema, { key: enc(key), value: enc(value) });
const kv = (key: string, value: string, rev: bigint): KeyValue => ({ key: enc(key), value: enc(value), createRevision: rev, modRevision: rev, version: 1n, lease: 0n });

describe.skipIf(!covered)(`transactions on ${BACKEND}`, () => {
  beforeAll(async () => {
    db = await openStore();
    c = client(db.store);
  });
  afterAll(() => db?.close());

  test("a transaction failing after it wrote rolls back its whole batch", async () => {
    await c.put("x", "before");
    const r0 = db.store.revision;
    // three transactions queued in one turn of the event loop: one batch
    const writes = [
      db.store.write(async (a) => (await a.put(putReq("x", "1")), await a.finish())),
      db.store.write(async (a) => {
        await a.put(putReq("y", "2"));
        await a.tx.put(kv("y2", "2", a.writeRevision), undefined, 1);
        throw new Error("failed after writing");
      }),
      db.store.write(async (a) => (await a.put(putReq("z", "3")), await a.finish())),
    ];
    const results = await Promise.allSettled(writes);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected", "rejected"]);
    // nothing of the batch is seen, in reads or in history, and no revision was used
    expect(dec((await c.get("x"))!.value)).toBe("before");
    for (const k of ["y", "y2", "z"]) expect(await c.get(k)).toBeUndefined();
    expect(db.store.revision).toBe(r0);
    expect((await db.backend.revisions()).revision).toBe(r0);
    expect((await db.backend.events(r0 + 1n, r0 + 10n, 100)).events).toEqual([]);
    // the next write takes the next revision
    expect((await c.put("z", "after")).header.revision).toBe(r0 + 1n);
  });

  test("a transaction refused before writing fails alone; the rest of its batch commits", async () => {
    const r0 = db.store.revision;
    const results = await Promise.allSettled([
      c.put("g1", "x"),
      c.put("g2", "y", 12345n), // no such lease
      c.txn([], [getOp("g1", r0 + 100n)]), // a future revision
      c.txn([], [putOp("g3", "z")]),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "rejected", "fulfilled"]);
    expect((results[1] as PromiseRejectedResult).reason.message).toBe("etcdserver: requested lease not found");
    expect((results[2] as PromiseRejectedResult).reason.message).toBe("etcdserver: mvcc: required revision is a future revision");
    expect(await c.list("g", "h")).toEqual([`g1=x@${r0 + 1n}/v1/c${r0 + 1n}`, `g3=z@${r0 + 2n}/v1/c${r0 + 2n}`]);
    expect(db.store.revision).toBe(r0 + 2n);
  });

  test("a txn's compares see the state before it; its writes land together; its reads see its own writes", async () => {
    await c.put("t/a", "1");
    await c.put("t/b", "1");
    const r0 = db.store.revision;
    const out = await c.txn(
      [valueIs("t/a", "1"), modIs("t/b", 2, r0 + 1n)],
      [putOp("t/a", "2"), getOp("t/a"), delOp("t/b"), putOp("t/c", "new"), { request: { case: "requestTxn", value: { compare: [valueIs("t/a", "1")], success: [putOp("t/d", "seen-before")], failure: [putOp("t/d", "seen-after")] } } }],
      [putOp("t/failed", "1")],
    );
    expect(out.succeeded).toBe(true);
    expect(out.header.revision).toBe(r0 + 1n);
    const read = out.responses[1]!.response;
    expect(read.case).toBe("responseRange");
    if (read.case === "responseRange") {
      expect(read.value.kvs.map((k) => dec(k.value))).toEqual(["2"]);
      expect(read.value.header.revision).toBe(r0 + 1n);
    }
    // a nested txn's compares, too, see the state before the whole txn (etcd evaluates them first)
    expect(await c.list("t/", "t0")).toEqual([`t/a=2@${r0 + 1n}/v2/c${r0 - 1n}`, `t/c=new@${r0 + 1n}/v1/c${r0 + 1n}`, `t/d=seen-before@${r0 + 1n}/v1/c${r0 + 1n}`]);
    expect((await history(db.backend, r0 + 1n, r0 + 1n)).length).toBe(4);
    // the failure branch, when a compare fails; a compare on a missing key's value always fails
    const f = await c.txn([valueIs("t/missing", "")], [putOp("t/never", "1")], [putOp("t/failed", "1")]);
    expect([f.succeeded, f.header.revision]).toEqual([false, r0 + 2n]);
    expect(await c.get("t/never")).toBeUndefined();
    expect(await c.get("t/failed")).toMatchObject({ modRevision: r0 + 2n });
  });

  test("concurrent compare-and-swap increments: none lost, none applied twice", async () => {
    await c.put("counter", "0");
    const attempts = 150;
    let conflicts = 0;
    const incr = async (): Promise<bigint> => {
      for (;;) {
        const cur = (await c.get("counter"))!;
        const r = await c.txn([modIs("counter", 0, cur.modRevision)], [putOp("counter", String(Number(dec(cur.value)) + 1))]);
        if (r.succeeded) return r.header.revision;
        conflicts++;
      }
    };
    const revs = await Promise.all(Array.from({ length: attempts }, incr));
    const final = (await c.get("counter"))!;
    expect(dec(final.value)).toBe(String(attempts));
    expect(final.version).toBe(BigInt(attempts + 1));
    expect(new Set(revs.map(String)).size).toBe(attempts);
    // group commit puts racing increments in one batch: most of them must have lost a compare
    expect(conflicts).toBeGreaterThan(0);
  });

  test("a compare over a range holds for every key in it", async () => {
    await c.txn([], [putOp("cmp/1", "v"), putOp("cmp/2", "v")]);
    const all = await c.txn([{ key: enc("cmp/"), rangeEnd: enc("cmp0"), target: 3, result: 0, targetUnion: { case: "value", value: enc("v") } }], [putOp("cmp/ok", "1")]);
    expect(all.succeeded).toBe(true);
    await c.put("cmp/2", "w");
    const some = await c.txn([{ key: enc("cmp/1"), rangeEnd: enc("cmp/3"), target: 3, result: 0, targetUnion: { case: "value", value: enc("v") } }], [putOp("cmp/no", "1")]);
    expect(some.succeeded).toBe(false);
    expect(await c.get("cmp/no")).toBeUndefined();
  });
});
