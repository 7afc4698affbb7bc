// The engine on a real SQLite file: MVCC reads at every revision, compaction, history
// for watchers, and group commit under concurrency.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CompactionRequestSchema,
  DeleteRangeRequestSchema,
  PutRequestSchema,
  type RangeRequest,
  RangeRequestSchema,
  TxnRequestSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { ReadPool } from "../../src/backends/sql/read-pool.ts";
import { SqliteBackend } from "../../src/backends/sqlite/sqlite.ts";
import { finishRange, rangeQuery } from "../../src/mvcc/range.ts";
import { Store } from "../../src/mvcc/store.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const dir = mkdtempSync(join(tmpdir(), "strata-store-"));
let backend: SqliteBackend;
let store: Store;

async function openStore(): Promise<void> {
  backend = await SqliteBackend.open(join(dir, "s.db"));
  const state = await backend.open();
  store = new Store(backend);
  store.init(state.revision, state.compactRevision);
}

const put = (k: string, v: string) => store.put(create(PutRequestSchema, { key: enc(k), value: enc(v) }));
const del = (k: string) => store.deleteRange(create(DeleteRangeRequestSchema, { key: enc(k) }));
async function all(revision = 0n): Promise<string[]> {
  const r = await rangeOf(store, create(RangeRequestSchema, { key: enc("\0"), rangeEnd: enc("\0"), revision }));
  return r.kvs.map((kv) => `${dec(kv.key)}=${dec(kv.value)}@${kv.modRevision}/v${kv.version}/c${kv.createRevision}`);
}

beforeAll(openStore);
afterAll(async () => {
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("SQLite MVCC", () => {
  test("every revision reads as it was", async () => {
    await put("a", "1"); // 2
    await put("b", "1"); // 3
    await put("a", "2"); // 4
    await del("b"); // 5
    await put("b", "2"); // 6
    expect(await all(2n)).toEqual(["a=1@2/v1/c2"]);
    expect(await all(3n)).toEqual(["a=1@2/v1/c2", "b=1@3/v1/c3"]);
    expect(await all(4n)).toEqual(["a=2@4/v2/c2", "b=1@3/v1/c3"]);
    expect(await all(5n)).toEqual(["a=2@4/v2/c2"]);
    expect(await all(6n)).toEqual(["a=2@4/v2/c2", "b=2@6/v1/c6"]);
    expect(await all()).toEqual(await all(6n));
    // not expect().rejects: while it waits, bun test delivers no message from a read thread
    expect(await all(7n).catch((e: Error) => e.message)).toBe("etcdserver: mvcc: required revision is a future revision");
  });

  test("history carries events with their previous versions", async () => {
    const { events: evs } = await backend.events(2n, 6n, 100);
    expect(evs.map((e) => `${e.type}:${dec(e.kv.key)}@${e.kv.modRevision}<${e.prevKv ? dec(e.prevKv.value) : "-"}`)).toEqual([
      "0:a@2<-",
      "0:b@3<-",
      "0:a@4<1",
      "1:b@5<1",
      "0:b@6<-",
    ]);
    expect((await backend.events(3n, 6n, 2)).events.map((e) => e.kv.modRevision)).toEqual([3n, 4n]);
  });

  test("history pages for catch-up: one range, bounded in bytes, previous versions only when asked", async () => {
    const a = { start: enc("a"), end: enc("b") };
    const onlyA = await backend.events(2n, 6n, 100, { range: a });
    expect(onlyA.events.map((e) => `${dec(e.kv.key)}@${e.kv.modRevision}`)).toEqual(["a@2", "a@4"]);
    expect(onlyA.through).toBe(6n);
    const bare = await backend.events(2n, 6n, 100, { prevKv: false });
    expect(bare.events.map((e) => e.prevKv)).toEqual([undefined, undefined, undefined, undefined, undefined]);
    // each event here is 2 bytes of key and value: the page ends between revisions past the bound
    const small = await backend.events(2n, 6n, 100, { bytes: 3 });
    expect([small.events.map((e) => e.kv.modRevision), small.through]).toEqual([[2n], 2n]);
    // a first revision larger than the bound comes whole
    const one = await backend.events(4n, 6n, 100, { bytes: 1 });
    expect([one.events.map((e) => e.kv.modRevision), one.through]).toEqual([[4n], 4n]);
  });

  test("compaction keeps exactly what reads at or after it need", async () => {
    await store.compact(create(CompactionRequestSchema, { revision: 5n, physical: true }));
    expect(await all(4n).catch((e: Error) => e.message)).toBe("etcdserver: mvcc: required revision has been compacted");
    expect(await all(5n)).toEqual(["a=2@4/v2/c2"]);
    expect(await all(6n)).toEqual(["a=2@4/v2/c2", "b=2@6/v1/c6"]);
    // b's tombstone at 5 and everything older than each key's live version are gone
    expect((await backend.events(1n, 6n, 100)).events.map((e) => `${dec(e.kv.key)}@${e.kv.modRevision}`)).toEqual(["a@4", "b@6"]);
    await expect(store.compact(create(CompactionRequestSchema, { revision: 5n }))).rejects.toThrow("compacted");
    await expect(store.compact(create(CompactionRequestSchema, { revision: 99n }))).rejects.toThrow("future revision");
  });

  test("state survives reopening the file", async () => {
    const before = await all();
    await backend.close();
    await openStore();
    expect(await all()).toEqual(before);
    expect(store.revision).toBe(6n);
    expect(store.compactRevision).toBe(5n);
  });
});

describe("group commit", () => {
  test("concurrent compare-and-swap increments never both succeed", async () => {
    await put("counter", "0");
    const attempts = 300;
    const incr = async (): Promise<bigint | undefined> => {
      for (;;) {
        const cur = (await rangeOf(store, create(RangeRequestSchema, { key: enc("counter") }))).kvs[0]!;
        const next = String(Number(dec(cur.value)) + 1);
        const r = await store.txn(create(TxnRequestSchema, {
          compare: [{ key: enc("counter"), target: 2, result: 0, targetUnion: { case: "modRevision", value: cur.modRevision } }],
          success: [{ request: { case: "requestPut", value: { key: enc("counter"), value: enc(next) } } }],
        }));
        if (r.succeeded) return r.header.revision;
      }
    };
    const revs = await Promise.all(Array.from({ length: attempts }, incr));
    const final = (await rangeOf(store, create(RangeRequestSchema, { key: enc("counter") }))).kvs[0]!;
    expect(dec(final.value)).toBe(String(attempts));
    expect(new Set(revs.map(String)).size).toBe(attempts);
  });

  test("a failing transaction in a batch leaves the others committed", async () => {
    const results = await Promise.allSettled([
      put("g1", "x"),
      store.put(create(PutRequestSchema, { key: enc("g2"), value: enc("y"), lease: 12345n })),
      put("g3", "z"),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect((results[1] as PromiseRejectedResult).reason.message).toBe("etcdserver: requested lease not found");
    const [r1, , r3] = results as PromiseFulfilledResult<{ header: { revision: bigint } }>[];
    expect(r3!.value.header.revision).toBe(r1!.value.header.revision + 1n);
    expect((await all()).filter((s) => s.startsWith("g")).map((s) => s.split("@")[0])).toEqual(["g1=x", "g3=z"]);
  });
});

describe("reads on read threads", () => {
  test("no thread runs until a read waits for one; then as many as reads wait for, up to the most", async () => {
    for (let i = 0; i < 10; i++) await put(`lazy/${i}`, "v");
    const pool = new ReadPool("lazy", { sqlite: join(dir, "s.db") }, 2);
    try {
      expect(pool.threadCount).toBe(0);
      const q = rangeQuery(create(RangeRequestSchema, { key: enc("lazy/"), rangeEnd: enc("lazy0") }));
      expect((await pool.range(q)).kvs.map((kv) => dec(kv.key))).toHaveLength(10);
      expect(pool.threadCount).toBe(1);
      // 20 reads at once: a second thread starts while they wait, no third
      const many = await Promise.all(Array.from({ length: 20 }, () => pool.range(q)));
      expect(many.every((r) => r.kvs.length === 10)).toBe(true);
      expect(pool.threadCount).toBe(2);
    } finally {
      await pool.close();
    }
  });

  test("a thread without reads for a while ends; the next read starts one again", async () => {
    await put("retire/a", "v");
    const pool = new ReadPool("retire", { sqlite: join(dir, "s.db") }, 2, 200);
    try {
      const q = rangeQuery(create(RangeRequestSchema, { key: enc("retire/"), rangeEnd: enc("retire0") }));
      expect((await pool.range(q)).kvs).toHaveLength(1);
      expect(pool.threadCount).toBe(1);
      // retired 200 ms after its read: waited for up to 50 s, however busy the machine
      for (let i = 0; i < 500 && pool.threadCount > 0; i++) await Bun.sleep(100);
      expect(pool.threadCount).toBe(0);
      await put("retire/b", "v");
      expect((await pool.range(q)).kvs.map((kv) => dec(kv.key))).toEqual(["retire/a", "retire/b"]);
      expect(pool.threadCount).toBe(1);
    } finally {
      await pool.close();
    }
  });

  test("a thread's end closes its connection and writes nothing (it logs no failed write)", async () => {
    await put("end/a", "v");
    // a thread logs to the process's stderr: read in a process of its own
    const pool = join(import.meta.dir, "../../src/backends/sql/read-pool.ts");
    const script = `
      const { ReadPool } = await import(${JSON.stringify(pool)});
      const enc = (s) => new TextEncoder().encode(s);
      const p = new ReadPool("end", { sqlite: ${JSON.stringify(join(dir, "s.db"))} }, 1);
      const r = await p.range({ range: { start: enc("end/"), end: enc("end0") }, revision: 0n, limit: 0, countOnly: false, keysOnly: false });
      await p.close();
      console.log("read " + r.kvs.length);`;
    const child = Bun.spawnSync([process.execPath, "-e", script], { timeout: 60_000 });
    expect(child.stdout.toString().trim()).toBe("read 1");
    expect(child.stderr.toString()).toBe("");
  });

  test("a thread that cannot open the database fails the reads waiting for it, naming why", async () => {
    const pool = new ReadPool("missing", { sqlite: join(dir, "no-such-dir", "x.db") }, 2);
    try {
      const q = rangeQuery(create(RangeRequestSchema, { key: enc("a"), rangeEnd: enc("b") }));
      const failed = await Promise.allSettled([pool.range(q), pool.range(q)]);
      for (const f of failed) {
        expect(f.status).toBe("rejected");
        expect(String((f as PromiseRejectedResult).reason)).toMatch(/open/);
      }
      expect(pool.threadCount).toBe(0);
    } finally {
      await pool.close();
    }
  });

  test("a range after an acknowledged write sees it and reports its revision or later, while others write", async () => {
    let writing = true;
    const others = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; writing; i++) await put(`t/other${w}-${i % 50}`, String(i));
    });
    for (let i = 0; i < 200; i++) {
      const { header } = await put(`t/mine${i}`, "v");
      const r = await rangeOf(store, create(RangeRequestSchema, { key: enc("t/"), rangeEnd: enc("t0") }), true);
      expect(r.header.revision >= header.revision).toBe(true);
      const seen = r.encodedKvs ? Buffer.from(r.encodedKvs).includes(Buffer.from(`t/mine${i}`)) : r.kvs.some((kv) => dec(kv.key) === `t/mine${i}`);
      expect(seen).toBe(true);
    }
    writing = false;
    await Promise.all(others);
  });
});

/** a Range as the keyspace answers it from one store: the raw read, finished */
async function rangeOf(store: Store, r: RangeRequest, encode = false) {
  return finishRange(r, await store.read(rangeQuery(r, { encodedKvs: encode })));
}
