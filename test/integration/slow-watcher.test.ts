// A watch client that stops reading must not hold up writers or other watchers, and
// when it reads again it gets every event, in order, from the history.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Etcd3 } from "etcd3";
import { prefixEnd, rawWatch } from "../support/raw-watch.ts";
import { startStrata, type StrataProcess } from "../support/strata.ts";

let strata: StrataProcess;
beforeAll(async () => {
  strata = await startStrata();
});
afterAll(async () => {
  await strata?.stop();
});

const WRITES = 3000;
const VALUE = Buffer.alloc(4096, 120);

test("a stalled watch client holds up neither writers nor other watchers", async () => {
  const client = new Etcd3({ hosts: strata.endpoint });
  const slow = rawWatch(strata.endpoint);
  slow.send({ requestUnion: { case: "createRequest", value: { key: Buffer.from("slow/"), rangeEnd: prefixEnd("slow/") } } });
  const slowRevisions = () => slow.responses.flatMap((r) => r.events.map((e) => e.kv!.modRevision));
  await new Promise((r) => setTimeout(r, 200));
  slow.pause();

  const fast = await client.watch().prefix("slow/").create();
  const fastRevs: number[] = [];
  fast.on("put", (kv) => fastRevs.push(Number(kv.mod_revision)));

  const started = Date.now();
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < WRITES) await client.put(`slow/k${next++}`).value(VALUE).exec();
  }));
  const writeSeconds = (Date.now() - started) / 1000;
  // 12 MiB of events were produced for a client that reads nothing
  const deadline = Date.now() + 20_000;
  while (fastRevs.length < WRITES && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(fastRevs.length).toBe(WRITES);
  expect(slowRevisions().length).toBeLessThan(WRITES); // it really stalled
  expect(writeSeconds).toBeLessThan(30);

  slow.resume();
  while (slowRevisions().length < WRITES && Date.now() < deadline + 20_000) await new Promise((r) => setTimeout(r, 50));
  expect(slowRevisions().length).toBe(WRITES);
  const revs = slowRevisions();
  for (let i = 1; i < revs.length; i++) expect(revs[i]! > revs[i - 1]!).toBe(true);
  expect(revs.map(Number)).toEqual([...fastRevs].sort((a, b) => a - b));

  await fast.cancel();
  slow.close();
  client.close();
}, 90_000);
