// Several strata processes on one shared database (PostgreSQL, MariaDB or NATS) keep the
// storage contract: one revision order, compare-and-swap that never double-succeeds,
// the same watch history everywhere, gap-free list-then-watch across processes, and
// leases that expire exactly once.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { Etcd3 } from "etcd3";
import { prefixEnd, rawWatch } from "../support/raw-watch.ts";
import { BACKEND, startStrata, type StrataProcess } from "../support/strata.ts";

if (BACKEND === "sqlite") throw new Error("multi-process tests need STRATA_TEST_BACKEND=postgres, mariadb, nats or an engine profile's simulation");

let procs: StrataProcess[] = [];
let clients: Etcd3[] = [];
beforeAll(async () => {
  const first = await startStrata();
  procs = [first, await startStrata([], first.backendUrl), await startStrata([], first.backendUrl)];
  clients = procs.map((p) => new Etcd3({ hosts: p.endpoint }));
}, 60_000);
afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(procs.map((p) => p.stop()));
});

type Ev = string;
function record(c: Etcd3, prefix: string, startRevision?: string) {
  const events: Ev[] = [];
  const ready = (startRevision ? c.watch().prefix(prefix).startRevision(startRevision) : c.watch().prefix(prefix))
    .withPreviousKV().create().then((w) => {
      w.on("put", (kv, prev) => events.push(`put ${kv.key} ${kv.value} @${kv.mod_revision} v${kv.version} prev=${prev?.value ?? "-"}`));
      w.on("delete", (kv, prev) => events.push(`del ${kv.key} @${kv.mod_revision} prev=${prev?.value ?? "-"}`));
      return w;
    });
  return { events, ready };
}
const until = async (cond: () => boolean, ms = 20_000) => {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
};

describe(`three strata processes on one ${BACKEND}`, () => {
  test("a compare-and-swap counter incremented through all processes ends exactly at N", async () => {
    const watches = clients.map((c) => record(c, "cas/"));
    const watchers = await Promise.all(watches.map((w) => w.ready));
    await clients[0]!.put("cas/counter").value("0").exec();
    const N = 150;
    let done = 0;
    const revisions: string[] = [];
    const worker = async (c: Etcd3) => {
      while (done < N) {
        const cur = await c.get("cas/counter").exec();
        const kv = cur.kvs[0]!;
        const next = Number(kv.value.toString()) + 1;
        if (next > N) return;
        const r = await c.if("cas/counter", "Mod", "==", kv.mod_revision).then(c.put("cas/counter").value(String(next))).commit();
        if (r.succeeded) {
          done++;
          revisions.push(r.header.revision);
        }
      }
    };
    await Promise.all(clients.flatMap((c) => [worker(c), worker(c), worker(c)]));
    expect((await clients[1]!.get("cas/counter").string())).toBe(String(N));
    expect(revisions.length).toBe(N);
    expect(new Set(revisions).size).toBe(N);
    // every process's watch saw the same sequence: N + 1 puts, values 0..N in order
    await until(() => watches.every((w) => w.events.length >= N + 1));
    for (const w of watches) expect(w.events).toEqual(watches[0]!.events);
    expect(watches[0]!.events.map((e) => e.split(" ")[2])).toEqual(Array.from({ length: N + 1 }, (_, i) => String(i)));
    await Promise.all(watchers.map((w) => w.cancel()));
  }, 120_000);

  test("a list on one process and a watch from its revision + 1 on another miss nothing", async () => {
    let stop = false;
    let n = 0;
    const writers = clients.map(async (c, i) => {
      while (!stop) await c.put(`lw/${i}/${n++}`).value("v").exec();
    });
    await new Promise((r) => setTimeout(r, 300));
    const list = await clients[0]!.getAll().prefix("lw/").exec();
    const listRev = BigInt(list.header.revision);
    const seen = new Set(list.kvs.map((kv) => kv.key.toString()));
    const w = record(clients[2]!, "lw/", String(listRev + 1n));
    const watcher = await w.ready;
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await Promise.all(writers);
    const final = await clients[1]!.getAll().prefix("lw/").exec();
    await until(() => seen.size + w.events.length >= final.kvs.length);
    for (const e of w.events) seen.add(e.split(" ")[1]!);
    expect(seen.size).toBe(final.kvs.length);
    expect(w.events.length).toBe(final.kvs.length - list.kvs.length); // each exactly once
    const revs = w.events.map((e) => BigInt(e.split("@")[1]!.split(" ")[0]!));
    expect(revs.every((r, i) => r > listRev && (i === 0 || r > revs[i - 1]!))).toBe(true);
    await watcher.cancel();
  }, 60_000);

  test("a lease granted on one process is kept alive through another and expires once, seen by all", async () => {
    const watches = clients.map((c) => record(c, "lease/"));
    const watchers = await Promise.all(watches.map((w) => w.ready));
    const lease = clients[0]!.lease(3, { autoKeepAlive: false });
    const id = await lease.grant();
    await lease.put("lease/a").value("1").exec();
    await lease.put("lease/b").value("2").exec();
    await new Promise((r) => setTimeout(r, 2000));
    // a keepalive through another process extends it for everyone
    const hex = BigInt(id).toString(16);
    execFileSync("etcdctl", [`--endpoints=${procs[2]!.endpoint}`, "lease", "keep-alive", "--once", hex], { stdio: "pipe" });
    await new Promise((r) => setTimeout(r, 2000)); // past the original deadline
    expect((await clients[1]!.getAll().prefix("lease/").keys()).sort()).toEqual(["lease/a", "lease/b"]);
    await until(() => watches.every((w) => w.events.filter((e) => e.startsWith("del")).length >= 2), 10_000);
    await new Promise((r) => setTimeout(r, 1500)); // time for a second, wrong expiry to show
    const deletes = (w: { events: Ev[] }) => w.events.filter((e) => e.startsWith("del"));
    for (const w of watches) {
      expect(deletes(w).length).toBe(2);
      expect(deletes(w)).toEqual(deletes(watches[0]!));
    }
    expect((await clients[1]!.getAll().prefix("lease/").keys()).length).toBe(0);
    const gone = await clients[1]!.leaseClient.leaseTimeToLive({ ID: id } as never);
    expect(String(gone.TTL)).toBe("-1");
    await Promise.all(watchers.map((w) => w.cancel()));
  }, 30_000);

  test("a compaction through one process holds on the others: reads and watches below it fail as compacted", async () => {
    const first = await clients[0]!.put("compact/a").value("1").exec();
    await clients[0]!.put("compact/a").value("2").exec();
    const last = await clients[0]!.put("compact/a").value("3").exec();
    await clients[1]!.kv.compact({ revision: last.header.revision, physical: true } as never);
    // another process refuses the compacted revision at once
    await expect(clients[2]!.get("compact/a").revision(first.header.revision).exec()).rejects.toThrow(
      "required revision has been compacted",
    );
    // and a watch from before the compaction is cancelled naming it, not given a gap
    const w = rawWatch(procs[2]!.endpoint);
    w.send({ requestUnion: { case: "createRequest", value: { key: Buffer.from("compact/"), rangeEnd: prefixEnd("compact/"), startRevision: BigInt(first.header.revision) } } });
    await until(() => w.responses.some((r) => r.canceled));
    const canceled = w.responses.find((r) => r.canceled)!;
    expect(canceled.compactRevision).toBe(BigInt(last.header.revision));
    expect(w.responses.flatMap((r) => r.events)).toEqual([]);
    w.close();
  }, 30_000);

  test("a large range's count made on one process follows keys created and deleted through the others", async () => {
    // more keys than the smallest count a process keeps current (mvcc/live-counts.ts), in txns of 100
    const key = (i: number) => `lc/${String(i).padStart(4, "0")}`;
    for (let i = 0; i < 1100; i += 100) {
      const puts = Array.from({ length: 100 }, (_, j) => clients[0]!.put(key(i + j)).value("v"));
      await clients[0]!.if(key(9999), "Create", "==", 0).then(...puts).commit();
    }
    const raw = async (c: Etcd3) => (await c.kv.range({ key: Buffer.from("lc/"), range_end: Buffer.from("lc0"), limit: 1, keys_only: true } as never)) as { count: string };
    expect(Number((await raw(clients[0]!)).count)).toBe(1100);
    await clients[1]!.put(key(5000)).value("created elsewhere").exec();
    await clients[2]!.delete().key(key(3)).exec();
    await clients[2]!.delete().key(key(4)).exec();
    // each process's first page and count: 1,100 + 1 - 2, as soon as it is asked
    for (const c of clients) expect(Number((await raw(c)).count)).toBe(1099);
  }, 60_000);
});
