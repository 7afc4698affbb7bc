// A starting server reads its topology and CRDs on its event loop, before it listens
// (src/util/start-up.ts): no read thread is started for them (each is a JavaScript VM,
// about 6 MiB, held for 30 s). Once it serves, a client's range over many keys is read
// on a read thread as before.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { Etcd3 } from "etcd3";
import { startStrata, type StrataProcess } from "../support/strata.ts";

let strata: StrataProcess;
beforeAll(async () => {
  strata = await startStrata();
}, 90_000);
afterAll(async () => {
  await strata?.stop();
}, 30_000);

/** the server's worker threads (Bun names each one's thread "Worker") */
function workerThreads(): number {
  const tasks = `/proc/${strata.pid()}/task`;
  return readdirSync(tasks).filter((t) => {
    try {
      return readFileSync(`${tasks}/${t}/comm`, "utf8").trim() === "Worker";
    } catch {
      return false; // a thread that just ended
    }
  }).length;
}

test("a server starts no read thread for its own reads; a client's range starts one", async () => {
  // at most the SQLite checkpoint thread, which checked the database at start
  const atStart = workerThreads();
  expect(atStart).toBeLessThanOrEqual(1);
  const c = new Etcd3({ hosts: strata.endpoint });
  try {
    for (let i = 0; i < 3; i++) await c.put(`start-up/k${i}`).value(`v${i}`).exec();
    const before = workerThreads();
    expect(await c.getAll().prefix("start-up/").strings()).toEqual({ "start-up/k0": "v0", "start-up/k1": "v1", "start-up/k2": "v2" });
    expect(workerThreads()).toBe(before + 1);
  } finally {
    c.close();
  }
}, 60_000);
