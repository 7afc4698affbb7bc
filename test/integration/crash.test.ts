// kill -9 in the middle of a write load, then a restart on the same file: every
// acknowledged write is there, no transaction is half applied, revisions go on.
import { afterAll, expect, test } from "bun:test";
import { Etcd3 } from "etcd3";
import { startStrata, type StrataProcess } from "../support/strata.ts";

let strata: StrataProcess | undefined;
afterAll(async () => {
  await strata?.stop();
});

const WRITERS = 24;

test("kill -9 under load loses no acknowledged write and no txn is half applied", async () => {
  strata = await startStrata();
  const client = new Etcd3({ hosts: strata.endpoint, retry: false } as never);
  // key → acknowledged value and revision; every txn writes three keys at once
  const acked = new Map<string, { value: string; revision: number }>();
  let stop = false;
  let maxAcked = 0;
  let attempted = 0;
  const writer = async (w: number) => {
    for (let i = 0; !stop; i++) {
      const id = `w${w}-${i}`;
      attempted++;
      try {
        const r = await client.kv.txn({
          compare: [{ key: Buffer.from(`crash/a/${id}`), target: "Mod", result: "Equal", mod_revision: 0 }],
          success: ["a", "b", "c"].map((p) => ({ request_put: { key: Buffer.from(`crash/${p}/${id}`), value: Buffer.from(id) } })),
          failure: [],
        } as never);
        const revision = Number(r.header.revision);
        maxAcked = Math.max(maxAcked, revision);
        for (const p of ["a", "b", "c"]) acked.set(`crash/${p}/${id}`, { value: id, revision });
      } catch {
        return; // the server is gone: this write was never acknowledged
      }
    }
  };
  const load = Array.from({ length: WRITERS }, (_, w) => writer(w));
  // once the load has really run (a fixed wait was too short on a slow database and
  // longer than needed on a fast one)
  const loaded = Date.now() + 15_000;
  while (acked.size < 900 && Date.now() < loaded) await new Promise((r) => setTimeout(r, 20));
  strata.kill(); // SIGKILL while writes are in flight
  stop = true;
  await Promise.all(load);
  client.close();
  expect(acked.size).toBeGreaterThan(300); // the load really ran
  expect(attempted).toBeGreaterThan(acked.size / 3); // and some writes were cut off mid-flight

  await strata.restart();
  const after = new Etcd3({ hosts: strata.endpoint });
  try {
    const all = await after.getAll().prefix("crash/").exec();
    const stored = new Map(all.kvs.map((kv) => [kv.key.toString(), kv]));
    for (const [key, a] of acked) {
      const kv = stored.get(key);
      expect(kv?.value.toString()).toBe(a.value);
      expect(Number(kv!.mod_revision)).toBe(a.revision);
    }
    // every txn is all or nothing: the three keys of one id exist together with one revision
    const ids = new Set([...stored.keys()].map((k) => k.split("/")[2]!));
    for (const id of ids) {
      const revs = ["a", "b", "c"].map((p) => stored.get(`crash/${p}/${id}`)?.mod_revision);
      expect(revs.every((r) => r !== undefined && r === revs[0])).toBe(true);
    }
    // revisions continue after the last acknowledged one
    const header = Number(all.header.revision);
    expect(header).toBeGreaterThanOrEqual(maxAcked);
    const next = await after.put("crash-after").value("x").exec();
    expect(Number(next.header.revision)).toBe(header + 1);
    // and the history is intact: a watch from revision 1 replays one event per stored write
    const watcher = await after.watch().prefix("crash/").startRevision("1").create();
    let events = 0;
    watcher.on("put", () => events++);
    const deadline = Date.now() + 10_000;
    while (events < stored.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await watcher.cancel();
    expect(events).toBe(stored.size);
  } finally {
    after.close();
  }
}, 60_000);
