// Ranges as etcd answers them: counts regardless of limit and filters, limits with `more`,
// pages at one revision that stay consistent while others write, keys-only reads, and the
// encoded read path answering the same as the decoded one.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create, fromBinary } from "@bufbuild/protobuf";
import { RangeRequestSchema, RangeResponseSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { successor } from "../../src/mvcc/keyrange.ts";
import { BACKEND, client, covered, dec, enc, type Opened, openStore, putOp, rangeOf, show } from "./harness.ts";
import type { Rev } from "../../src/mvcc/types.ts";

let db: Opened;
let c: ReturnType<typeof client>;
const N = 30;
const name = (i: number) => `p/${String(i).padStart(2, "0")}`;
/** the revision after the 30 keys were written */
let full: Rev;

describe.skipIf(!covered)(`ranges on ${BACKEND}`, () => {
  beforeAll(async () => {
    db = await openStore();
    c = client(db.store);
    await c.txn([], Array.from({ length: N }, (_, i) => putOp(name(i), `v${i}`)));
    full = db.store.revision;
  });
  afterAll(() => db?.close());

  test("a limit cuts the keys, says there are more and counts them all", async () => {
    const r = await c.range({ key: enc("p/"), rangeEnd: enc("p0"), limit: 10n });
    expect(r.kvs.map((kv) => dec(kv.key))).toEqual(Array.from({ length: 10 }, (_, i) => name(i)));
    expect([r.more, r.count, r.header.revision]).toEqual([true, BigInt(N), full]);
    const exact = await c.range({ key: enc("p/"), rangeEnd: enc("p0"), limit: BigInt(N) });
    expect([exact.kvs.length, exact.more]).toEqual([N, false]);
    // a limit of MaxInt64 is none
    const max = await c.range({ key: enc("p/"), rangeEnd: enc("p0"), limit: 2n ** 63n - 1n });
    expect([max.kvs.length, max.more, max.count]).toEqual([N, false, BigInt(N)]);
    const only = await c.range({ key: enc("p/"), rangeEnd: enc("p0"), countOnly: true });
    expect([only.kvs.length, only.count, only.more]).toEqual([0, BigInt(N), false]);
    const none = await c.range({ key: enc("q/"), rangeEnd: enc("q0"), limit: 5n });
    expect([none.kvs.length, none.count, none.more]).toEqual([0, 0n, false]);
  });

  test("pages at the first page's revision list every key once while others write", async () => {
    const pages: string[][] = [];
    let key: Uint8Array = enc("p/"), revision = 0n;
    for (let i = 0; ; i++) {
      const r = await c.range({ key, rangeEnd: enc("p0"), limit: 7n, revision });
      // between pages: a new key, a changed one, a deleted one — none of it in this listing
      await c.put(`p/${i}x`, "new");
      await c.put(name(29 - i), "changed");
      await c.del(name(i + 10));
      if (revision === 0n) revision = r.header.revision;
      // the count is the range's at the listing's revision: what is left from this page on
      expect(r.count).toBe(BigInt(N - i * 7));
      pages.push(r.kvs.map((kv) => `${dec(kv.key)}=${dec(kv.value)}`));
      if (!r.more) break;
      key = successor(r.kvs.at(-1)!.key);
    }
    expect(pages.map((p) => p.length)).toEqual([7, 7, 7, 7, 2]);
    expect(pages.flat()).toEqual(Array.from({ length: N }, (_, i) => `${name(i)}=v${i}`));
    // and the latest state has moved on
    expect((await c.range({ key: enc("p/"), rangeEnd: enc("p0"), countOnly: true })).count).toBe(BigInt(N));
    expect((await c.list("p/", "p0", full)).length).toBe(N);
  });

  test("counts at older revisions; filters and sorting do not change the count", async () => {
    const at = (revision: Rev) => c.range({ key: enc("p/"), rangeEnd: enc("p0"), revision, countOnly: true }).then((r) => r.count);
    expect(await at(full)).toBe(BigInt(N));
    expect(await at(full + 3n)).toBe(BigInt(N) + 1n - 1n); // one key added, one deleted
    const now = db.store.revision;
    const filtered = await c.range({ key: enc("p/"), rangeEnd: enc("p0"), minModRevision: full + 1n, limit: 3n });
    expect(filtered.count).toBe(await at(now));
    for (const kv of filtered.kvs) expect(kv.modRevision > full).toBe(true);
    const sorted = await c.range({ key: enc("p/"), rangeEnd: enc("p0"), sortOrder: 2, sortTarget: 0, limit: 2n });
    expect(sorted.kvs.map((kv) => dec(kv.key))).toEqual(["p/4x", "p/3x"]);
    expect([sorted.more, sorted.count]).toEqual([true, await at(now)]);
  });

  test("keys-only reads drop values and keep the rest", async () => {
    const r = await c.range({ key: enc("p/"), rangeEnd: enc("p0"), keysOnly: true, limit: 3n, revision: full });
    expect(r.kvs.map((kv) => [dec(kv.key), kv.value.length, kv.modRevision, kv.version])).toEqual([
      [name(0), 0, full, 1n],
      [name(1), 0, full, 1n],
      [name(2), 0, full, 1n],
    ]);
  });

  test("a single key, a prefix, every key from one, and an empty range", async () => {
    expect((await c.list(name(0), ""))).toEqual([`${name(0)}=v0@${full}/v1/c${full}`]);
    expect((await c.range({ key: enc(name(0)), rangeEnd: new Uint8Array(0) })).count).toBe(1n);
    expect((await c.list("p/0", "p/1")).map((s) => s.split("=")[0])).toEqual(["p/00", "p/01", "p/02", "p/03", "p/04", "p/05", "p/06", "p/07", "p/08", "p/09", "p/0x"]);
    expect((await c.list("p/4x")).length).toBe(1);
    const empty = await c.range({ key: enc("p/5"), rangeEnd: enc("p/4") });
    expect([empty.kvs.length, empty.count, empty.header.revision]).toEqual([0, 0n, db.store.revision]);
  });

  test("the encoded read answers as the decoded one", async () => {
    for (const [limit, revision] of [[0n, 0n], [4n, 0n], [4n, full], [100n, full + 2n]] as const) {
      const req = create(RangeRequestSchema, { key: enc("p/"), rangeEnd: enc("p0"), limit, revision });
      const plain = await rangeOf(db.store, req);
      const encoded = await rangeOf(db.store, req, true);
      const kvs = encoded.encodedKvs ? fromBinary(RangeResponseSchema, encoded.encodedKvs).kvs : encoded.kvs;
      expect(kvs.map((kv) => show(kv))).toEqual(plain.kvs.map(show));
      expect([encoded.more, encoded.count, encoded.header.revision]).toEqual([plain.more, plain.count, plain.header.revision]);
    }
  });
});
