// One strata process per SQLite file: a second one on the same file refuses to start
// and says why; once the first is gone (even by kill -9) the file can be opened again.
import { afterAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { freePort, startStrata, type StrataProcess } from "../support/strata.ts";

let first: StrataProcess | undefined;
afterAll(async () => {
  await first?.stop();
});

test("a second process on the same SQLite file is refused with the reason", async () => {
  first = await startStrata();
  const db = first.backendUrl.slice("sqlite://".length);
  const second = spawnSync(process.execPath, [
    resolve(import.meta.dir, "../../src/main.ts"), "serve", "--listen", `http://127.0.0.1:${await freePort()}`, "--backend", `sqlite://${db}`,
  ], { encoding: "utf8", timeout: 20_000 });
  expect(second.status).toBe(1);
  expect(second.stderr).toContain(`sqlite://${db} is in use by another strata process`);
  // kill -9 releases the lock: the same file serves again
  first.kill();
  await first.restart();
}, 60_000);
