// The database goes away for 10 s under a write load and comes back: strata answers
// Unavailable meanwhile (naming the backend), recovers by itself, keeps every
// acknowledged write, and its watchers resume without losing or repeating events.
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { Etcd3 } from "etcd3";
import { BACKEND, backendServer, startStrata, type StrataProcess } from "../support/strata.ts";

if (BACKEND === "sqlite") throw new Error("the outage test needs STRATA_TEST_BACKEND=postgres, mariadb or nats");

/** a Put over a plain gRPC client, so no client-side retry or circuit breaker is involved */
function rawPut(endpoint: string): Promise<string> {
  const c = new grpc.Client(endpoint, grpc.credentials.createInsecure());
  const body = Buffer.from([0x0a, 3, 0x72, 0x61, 0x77, 0x12, 1, 0x76]); // key "raw", value "v"
  return new Promise((resolve) =>
    c.makeUnaryRequest("/etcdserverpb.KV/Put", (x: Buffer) => x, (x: Buffer) => x, body, (err) => {
      c.close();
      resolve(err ? `${err.code} ${err.details}` : "ok");
    })
  );
}

let strata: StrataProcess;
beforeAll(async () => {
  strata = await startStrata();
}, 60_000);
afterAll(async () => {
  await strata?.stop();
}, 30_000);

test(`${BACKEND} stopped for 10 s during writes: no acknowledged write lost, watch resumes exactly`, async () => {
  const client = new Etcd3({ hosts: strata.endpoint, retry: false } as never);
  const watcher = await client.watch().prefix("outage/").create();
  const watched: string[] = [];
  watcher.on("put", (kv) => watched.push(`${kv.key}@${kv.mod_revision}`));

  const acked = new Map<string, string>();
  const failures: string[] = [];
  let stop = false;
  let n = 0;
  const writer = async () => {
    while (!stop) {
      const key = `outage/k${n++}`;
      try {
        const r = await client.put(key).value("v").exec();
        acked.set(key, r.header.revision);
      } catch (err) {
        failures.push(String((err as Error).message));
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  const writers = Array.from({ length: 4 }, writer);
  await new Promise((r) => setTimeout(r, 1000));
  const db = await backendServer();
  await db.stop();
  const ackedBeforeOutage = acked.size;
  // meanwhile a write is refused with a clear, retryable error naming the backend
  const refused = await rawPut(strata.endpoint);
  expect(refused).toStartWith(`14 strata: backend ${{ mariadb: "mysql", postgres: "postgres", nats: "nats" }[BACKEND]}://`);
  expect(refused).toContain("unavailable");
  await new Promise((r) => setTimeout(r, 10_000));
  await db.start();
  const restartedAt = Date.now();
  // strata recovers by itself: writes succeed again soon after the database is back
  const before = acked.size;
  while (acked.size < before + 50 && Date.now() - restartedAt < 30_000) await new Promise((r) => setTimeout(r, 50));
  stop = true;
  await Promise.all(writers);

  expect(ackedBeforeOutage).toBeGreaterThan(20);
  expect(acked.size).toBeGreaterThanOrEqual(before + 50);
  expect(failures.length).toBeGreaterThan(0);

  const stored = await client.getAll().prefix("outage/").exec();
  const storedKeys = new Map(stored.kvs.map((kv) => [kv.key.toString(), kv.mod_revision]));
  for (const [key, rev] of acked) expect(storedKeys.get(key)).toBe(rev);

  // the watch, open all along, delivers every stored write exactly once, in order
  const deadline = Date.now() + 20_000;
  while (watched.length < stored.kvs.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(watched.length).toBe(stored.kvs.length);
  expect(new Set(watched).size).toBe(watched.length);
  const revs = watched.map((w) => Number(w.split("@")[1]));
  expect(revs.every((r, i) => i === 0 || r > revs[i - 1]!)).toBe(true);
  await watcher.cancel();
  client.close();
}, 90_000);
