// SQLite's write-ahead log is copied into the database file by strata's checkpoint thread
// (src/backends/sqlite/wal-checkpointer.ts), not inside the commits on the event loop: the log
// must still be copied back and started again under a steady write load (else it grows
// without bound), and a quiet log must reach the database file within a few seconds.
import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { Etcd3 } from "etcd3";
import { WalCheckpointer } from "../../src/backends/sqlite/wal-checkpointer.ts";
import { Mutex } from "../../src/util/mutex.ts";
import { startStrata, type StrataProcess } from "../support/strata.ts";

let strata: StrataProcess | undefined;
afterEach(async () => {
  await strata?.stop();
  strata = undefined;
});

const pathOf = (s: StrataProcess) => s.backendUrl.slice("sqlite://".length);
const sizeOf = (p: string) => (existsSync(p) ? statSync(p).size : 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("under a steady write load the log is copied back and started again, not left to grow", async () => {
  strata = await startStrata();
  const path = pathOf(strata);
  const c = new Etcd3({ hosts: strata.endpoint });
  const value = Buffer.alloc(8192, 120);
  const writes = 4000;
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < writes) await c.put(`ckpt/k${next++ % 1000}`).value(value).exec();
  }));
  c.close();
  const written = writes * value.length;
  // without checkpoints the log would hold every page of every commit: several times `written`
  expect(sizeOf(`${path}-wal`)).toBeLessThan(written / 2);
  // and the history (every version is kept) is in the database file itself
  expect(sizeOf(path)).toBeGreaterThan(written / 2);
}, 120_000);

test("a few writes, then quiet: they reach the database file itself", async () => {
  strata = await startStrata();
  const path = pathOf(strata);
  const c = new Etcd3({ hosts: strata.endpoint });
  for (let i = 0; i < 5; i++) await c.put(`quiet/k${i}`).value(`v${i}`).exec();
  c.close();
  await sleep(3000);
  // kill -9 and throw the log away: what is left is what was checkpointed
  strata.kill();
  await sleep(300);
  rmSync(`${path}-wal`, { force: true });
  rmSync(`${path}-shm`, { force: true });
  const db = new Database(path, { readonly: true });
  try {
    const rows = db.prepare("SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k").all(Buffer.from("quiet/"), Buffer.from("quiet0")) as Array<{ k: Uint8Array; v: Uint8Array }>;
    expect(rows.map((r) => `${Buffer.from(r.k)}=${Buffer.from(r.v)}`)).toEqual([0, 1, 2, 3, 4].map((i) => `quiet/k${i}=v${i}`));
  } finally {
    db.close();
  }
}, 60_000);

test("the checkpoint thread ends once writes stop, and the next writes start one that copies them", async () => {
  const dir = mkdtempSync(join(tmpdir(), "strata-ckpt-"));
  const path = join(dir, "s.db");
  const db = new Database(path);
  db.run("PRAGMA journal_mode = WAL");
  db.run("PRAGMA wal_autocheckpoint = 0");
  db.run("CREATE TABLE t (v BLOB)");
  const checkpointer = await WalCheckpointer.start("test", path, false, new Mutex(), 200);
  try {
    expect(checkpointer.threadRunning).toBe(true);
    // ended 200 ms after its check: waited for up to 50 s, however busy the machine
    for (let i = 0; i < 500 && checkpointer.threadRunning; i++) await sleep(100);
    expect(checkpointer.threadRunning).toBe(false);
    const before = sizeOf(path);
    const insert = db.prepare("INSERT INTO t VALUES (?)");
    for (let i = 0; i < 32; i++) {
      insert.run(Buffer.alloc(8192, i));
      checkpointer.committed();
    }
    // the 32nd commit starts a checkpoint on a new thread, which copies the log into the file
    for (let i = 0; i < 500 && sizeOf(path) < before + 32 * 8192; i++) await sleep(100);
    expect(sizeOf(path)).toBeGreaterThanOrEqual(before + 32 * 8192);
  } finally {
    await checkpointer.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
  expect(checkpointer.threadRunning).toBe(false);
}, 120_000);
