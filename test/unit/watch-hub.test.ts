// The watch hub over a real SQLite store: a client that never reads again (a hung
// controller, a half-open connection) must slow only itself. Watchers that fall behind
// after it, and then read again, get every event in order, exactly once — or, if the
// history they need was compacted meanwhile, etcd's compaction cancel.
import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CompactionRequestSchema, DeleteRangeRequestSchema, PutRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { SqliteBackend } from "../../src/backends/sqlite/sqlite.ts";
import { Store } from "../../src/mvcc/store.ts";
import { prefixEnd, toKeyRange } from "../../src/mvcc/keyrange.ts";
import type { WatchResponseOut } from "../../src/keyspace/contract.ts";
import { WatchHub, Watcher, type WatchSink } from "../../src/keyspace/watch-hub.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dir = mkdtempSync(join(tmpdir(), "strata-hub-"));
let databases = 0;
let backend: SqliteBackend;
let store: Store;
let hub: WatchHub;
/** with several backends, the newest acknowledged revision can run ahead of the merged one */
let acknowledged: bigint | undefined;

beforeEach(async () => {
  acknowledged = undefined;
  backend = await SqliteBackend.open(join(dir, `hub-${++databases}.db`));
  const state = await backend.open();
  store = new Store(backend);
  store.init(state.revision, state.compactRevision);
  hub = new WatchHub(backend, () => ({ revision: store.revision, latest: acknowledged ?? store.revision, compactRevision: store.compactRevision }));
  store.onCommit((c) => hub.publish(c.revision, c.events));
});
afterEach(async () => {
  await backend.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** a client stream whose reading the test turns off and on */
class Client implements WatchSink {
  readonly responses: WatchResponseOut[] = [];
  private stalled = false;
  private waiting: Array<() => void> = [];

  send(r: WatchResponseOut): void {
    this.responses.push(r);
  }
  congested(): boolean {
    return this.stalled;
  }
  drained(): Promise<void> {
    return this.stalled ? new Promise((resolve) => this.waiting.push(resolve)) : Promise.resolve();
  }
  stall(): void {
    this.stalled = true;
  }
  resume(): void {
    this.stalled = false;
    for (const w of this.waiting.splice(0)) w();
  }
  revisions(): bigint[] {
    return this.responses.flatMap((r) => r.events.map((e) => e.kv.modRevision));
  }
}

let ids = 0n;
function watch(client: Client, prefix = "k/"): Watcher {
  const w = new Watcher(++ids, toKeyRange(enc(prefix), prefixEnd(enc(prefix))!), store.revision + 1n,
    { prevKv: false, noPut: false, noDelete: false, progressNotify: false }, client);
  hub.add(w);
  return w;
}

async function put(n: number, prefix = "k/"): Promise<bigint[]> {
  const revs: bigint[] = [];
  for (let i = 0; i < n; i++) revs.push((await store.put(create(PutRequestSchema, { key: enc(`${prefix}${i}`), value: enc(`v${i}`) }))).header.revision);
  return revs;
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
}

describe("a watcher that never reads again", () => {
  for (const stalledCount of [1, 100]) {
    test(`does not hold up a watcher that falls behind after it and reads again (${stalledCount} stalled)`, async () => {
      const stalled = Array.from({ length: stalledCount }, () => new Client());
      for (const a of stalled) watch(a);
      const b = new Client();
      const bw = watch(b);
      const before = await put(3);
      // the stalled clients fall behind first: catch-up now waits for them
      for (const a of stalled) a.stall();
      const whileStalled = await put(3);
      await until(() => false, 50);
      // then the healthy one falls behind too, and reads again
      b.stall();
      const whileBehind = await put(20);
      expect(hub.isSynced(bw)).toBe(false);
      b.resume();
      const after = await put(3);
      const all = [...before, ...whileStalled, ...whileBehind, ...after];
      await until(() => b.revisions().length >= all.length);
      expect(b.revisions()).toEqual(all);
      expect(hub.isSynced(bw)).toBe(true);
      for (const a of stalled) expect(a.revisions()).toEqual(before);
    });
  }

  test("one that falls behind while another is being caught up still catches up", async () => {
    const a = new Client();
    watch(a);
    const b = new Client();
    watch(b);
    const c = new Client();
    watch(c);
    a.stall();
    b.stall();
    const first = await put(10);
    b.resume(); // b catches up while a stays stalled
    c.stall();
    const second = await put(10);
    c.resume();
    await until(() => b.revisions().length >= 20 && c.revisions().length >= 20);
    expect(b.revisions()).toEqual([...first, ...second]);
    expect(c.revisions()).toEqual([...first, ...second]);
    expect(a.revisions()).toEqual([]);
  });
});

describe("compaction while a watcher waits for its client", () => {
  test("history it needs compacted away: etcd's compaction cancel", async () => {
    const a = new Client();
    watch(a);
    const b = new Client();
    const bw = watch(b);
    a.stall();
    await put(2);
    b.stall();
    const missed = await put(5);
    await store.compact(create(CompactionRequestSchema, { revision: missed[3]!, physical: true }));
    b.resume();
    await until(() => b.responses.some((r) => r.canceled));
    const cancel = b.responses.find((r) => r.canceled);
    expect(cancel).toMatchObject({ watchId: bw.id, canceled: true, compactRevision: missed[3]! });
    expect(b.revisions().filter((r) => r >= missed[0]!)).toEqual([]);
    expect(hub.isSynced(bw)).toBe(false);
    // a cancelled watcher hears nothing more
    await put(2);
    await until(() => false, 50);
    expect(b.responses.filter((r) => r.events.length > 0).length).toBe(2);
  });

  test("compaction below where it stands: it gets its events", async () => {
    const a = new Client();
    watch(a);
    const b = new Client();
    const bw = watch(b);
    a.stall();
    const early = await put(3);
    b.stall();
    const missed = await put(5);
    await store.compact(create(CompactionRequestSchema, { revision: missed[0]!, physical: true }));
    b.resume();
    const after = await put(1);
    await until(() => b.revisions().length >= early.length + missed.length + after.length);
    expect(b.revisions()).toEqual([...early, ...missed, ...after]);
    expect(b.responses.some((r) => r.canceled)).toBe(false);
    expect(hub.isSynced(bw)).toBe(true);
  });
});

describe("progress notifications", () => {
  test("wait until the merged order reaches a write already acknowledged elsewhere", async () => {
    const client = new Client();
    const w = new Watcher(++ids, toKeyRange(enc("p/"), prefixEnd(enc("p/"))!), store.revision + 1n,
      { prevKv: false, noPut: false, noDelete: false, progressNotify: true }, client);
    hub.add(w);
    await put(1, "other/");
    hub.progressTick();
    expect(client.responses.map((r) => r.header.revision)).toEqual([store.revision]);
    // another backend acknowledged a write two revisions ahead of what is published here
    acknowledged = store.revision + 2n;
    hub.progressTick();
    expect(client.responses.length).toBe(1);
    await put(1, "other/");
    expect(client.responses.length).toBe(1);
    await put(1, "other/");
    expect(client.responses.map((r) => r.header.revision).at(-1)).toBe(acknowledged);
    expect(client.responses.length).toBe(2);
  });
});

describe("watchers of one range", () => {
  /** a watcher of prefix s/ on its own client, with these options */
  function shaped(opts: Partial<Watcher["opts"]>): Client {
    const client = new Client();
    hub.add(new Watcher(++ids, toKeyRange(enc("s/"), prefixEnd(enc("s/"))!), store.revision + 1n,
      { prevKv: false, noPut: false, noDelete: false, progressNotify: false, ...opts }, client));
    return client;
  }

  test("with the same options share each revision's list of events (encoded once); other options get their own", async () => {
    const plain = [shaped({}), shaped({})];
    const withPrev = shaped({ prevKv: true });
    const noDelete = shaped({ noDelete: true });
    const noPut = shaped({ noPut: true, prevKv: true });
    await store.put(create(PutRequestSchema, { key: enc("s/x"), value: enc("1") }));
    await store.put(create(PutRequestSchema, { key: enc("s/x"), value: enc("2") }));
    await store.deleteRange(create(DeleteRangeRequestSchema, { key: enc("s/x") }));
    const seen = (c: Client) => c.responses.map((r) => r.events.map((e) => `${e.type}:${e.kv.modRevision}:${e.prevKv ? new TextDecoder().decode(e.prevKv.value) : "-"}`));
    const [first, second] = plain.map((c) => c.responses);
    expect(first!.length).toBe(3);
    // the very same arrays, so watch-encoding.ts encodes each once for both
    for (let i = 0; i < 3; i++) expect(second![i]!.events).toBe(first![i]!.events);
    const [put1, put2, del] = first!.map((r) => r.header.revision);
    expect(seen(plain[0]!)).toEqual([[`0:${put1}:-`], [`0:${put2}:-`], [`1:${del}:-`]]);
    expect(seen(withPrev)).toEqual([[`0:${put1}:-`], [`0:${put2}:1`], [`1:${del}:2`]]);
    expect(seen(noDelete)).toEqual([[`0:${put1}:-`], [`0:${put2}:-`]]);
    expect(seen(noPut)).toEqual([[`1:${del}:2`]]);
  });
});
