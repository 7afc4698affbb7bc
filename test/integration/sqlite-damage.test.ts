// SQLite files that go wrong under strata: pages overwritten while it is stopped (it must
// refuse to start, saying which file and what SQLite found), pages overwritten while it
// serves (the requests that meet them answer DataLoss, not a retryable code, the damage is
// logged and /readyz turns 503), a disk that fills up (etcd's NOSPACE, and the way out
// once there is room again), and a file that cannot be opened (its path named).
import { afterAll, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { spawnSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { strataCli } from "../support/cli.ts";
import { freePort, startStrata, type StrataProcess } from "../support/strata.ts";

const dirs: string[] = [];
const running: StrataProcess[] = [];
afterAll(async () => {
  await Promise.all(running.map((s) => s.stop()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "strata-damage-"));
  dirs.push(d);
  return d;
}

/** Overwrites `pages` pages in the middle of the file with bytes that are no SQLite page. */
function damage(file: string, pages = 4): void {
  const pageSize = 4096;
  const middle = Math.floor(statSync(file).size / pageSize / 2) * pageSize;
  const fd = openSync(file, "r+");
  writeSync(fd, new Uint8Array(pages * pageSize).fill(0xa5), 0, pages * pageSize, middle);
  closeSync(fd);
}

/** Fills a strata with `count` keys of `bytes` each, in parallel batches. */
async function fill(endpoint: string, prefix: string, count: number, bytes: number): Promise<void> {
  const c = new Etcd3({ hosts: endpoint });
  const value = Buffer.alloc(bytes, 0x61);
  for (let i = 0; i < count; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, count - i) }, (_, j) => c.put(`${prefix}${String(i + j).padStart(6, "0")}`).value(value).exec()));
  }
  c.close();
}

/** a raw Range over every key: "code message", or "ok" */
function rangeAll(endpoint: string): Promise<string> {
  // RangeRequest{key: "\0", range_end: "\0"}
  const body = Buffer.from([0x0a, 1, 0, 0x12, 1, 0]);
  const c = new grpc.Client(endpoint, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": -1 });
  return new Promise((resolve) => {
    c.makeUnaryRequest("/etcdserverpb.KV/Range", (x: Buffer) => x, (x: Buffer) => x, body, (err) => {
      c.close();
      resolve(err ? `${grpc.status[err.code]} ${err.details}` : "ok");
    });
  });
}

const etcdctl = (endpoint: string, ...args: string[]) =>
  spawnSync("etcdctl", [`--endpoints=${endpoint}`, "--command-timeout=10s", ...args], { encoding: "utf8", env: { ...process.env, ETCDCTL_API: "3" } });

describe("a damaged SQLite file", () => {
  test("is refused at start, naming the file and what quick_check found", async () => {
    const s = await startStrata();
    running.push(s);
    await fill(s.endpoint, "/registry/configmaps/ns/c", 2000, 2048);
    expect(await s.terminate()).toBe(0);
    const file = s.backendUrl.slice("sqlite://".length);
    damage(file);
    const port = await freePort();
    const r = await strataCli("serve", "--backend", s.backendUrl, "--listen", `http://127.0.0.1:${port}`, "--metrics-listen", "");
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split("\n");
    // one line for the operator: what, which file, SQLite's finding, what to do
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(`^strata: cannot start: backend ${s.backendUrl}: the file ${file} is damaged \\(PRAGMA quick_check: .*(page|btree|malformed|corrupt).*\\); strata does not serve a damaged database: restore it from a backup`),
    );
  }, 120_000);

  test("found while serving: DataLoss naming the backend, logged once as an error, /readyz 503, writes refused", async () => {
    const s = await startStrata();
    running.push(s);
    // more than SQLite's page cache holds, so the damaged pages are read from the file;
    // values small enough to live in the tables' own pages (damage in a value's overflow
    // page is only the value's bytes: SQLite cannot see it)
    await fill(s.endpoint, "/registry/secrets/ns/s", 8000, 1024);
    // a clean stop copies the write-ahead log into the file: reads go to the file's pages
    expect(await s.terminate()).toBe(0);
    await s.restart();
    expect(await rangeAll(s.endpoint)).toBe("ok");
    expect((await fetch(`${s.metrics}/readyz`)).status).toBe(200);
    // enough pages that both the current table and the history are hit
    damage(s.backendUrl.slice("sqlite://".length), 64);

    const answer = await rangeAll(s.endpoint);
    const expected = `DATA_LOSS strata: backend ${s.backendUrl} is damaged: database disk image is malformed`;
    expect(answer).toBe(expected);
    const ready = await fetch(`${s.metrics}/readyz`);
    expect([ready.status, (await ready.text()).trim()]).toEqual([503, `backend default (${s.backendUrl}): damaged data: database disk image is malformed`]);
    // writes are refused, even ones that would not touch the damaged pages
    const put = etcdctl(s.endpoint, "put", "/registry/other", "v");
    expect(put.status).not.toBe(0);
    expect(put.stderr).toContain(`code = DataLoss desc = strata: backend ${s.backendUrl} is damaged`);
    const errors = s.stderr().split("\n").filter((l) => l.includes('"level":"error"'));
    expect(errors).toHaveLength(1);
    expect(JSON.parse(errors[0]!)).toMatchObject({ msg: "database damaged: its requests answer DataLoss and its writes are refused", backend: s.backendUrl, error: "database disk image is malformed" });
  }, 120_000);

  // (a missing directory is made: test/integration/front-door-errors.test.ts)
  test("a file that cannot be opened is named", async () => {
    const port = await freePort();
    const path = tempDir();
    const url = `sqlite://${path}`;
    const r = await strataCli("serve", "--backend", url, "--listen", `http://127.0.0.1:${port}`, "--metrics-listen", "");
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`strata: cannot start: ${url}: ${path} is a directory, not a database file`);
  }, 60_000);
});

/** whether this process may mount a small tmpfs (root in a container that allows it) */
function tmpfs(sizeMb: number): string | undefined {
  const d = tempDir();
  const m = join(d, "mnt");
  mkdirSync(m);
  if (spawnSync("mount", ["-t", "tmpfs", "-o", `size=${sizeMb}m`, "tmpfs", m]).status !== 0) return undefined;
  return m;
}

const disk = process.getuid?.() === 0 ? tmpfs(4) : undefined;
if (!disk) console.warn("sqlite-damage: cannot mount a tmpfs here (needs root); the full-disk test is skipped");

describe("a full disk", () => {
  afterAll(() => {
    if (disk) spawnSync("umount", ["-l", disk]);
  });

  test.skipIf(!disk)("answers NOSPACE as etcd does, keeps every acknowledged write, and serves again once there is room", async () => {
    // no quota: the disk fills before it would
    const s = await startStrata(["--quota-backend-bytes=-1"], `sqlite://${join(disk!, "strata.db")}`);
    running.push(s);
    const c = new Etcd3({ hosts: s.endpoint });
    const value = Buffer.alloc(20_000, 0x62);
    let acknowledged = 0;
    let refusal = "";
    for (let i = 0; i < 1000 && !refusal; i++) {
      try {
        await c.put(`full/${String(i).padStart(4, "0")}`).value(value).exec();
        acknowledged++;
      } catch (err) {
        refusal = (err as Error).message;
      }
    }
    c.close();
    expect(acknowledged).toBeGreaterThan(10);
    expect(refusal).toContain("etcdserver: mvcc: database space exceeded");
    const put = etcdctl(s.endpoint, "put", "full/one-more", "x");
    expect(put.stderr).toContain("code = ResourceExhausted desc = etcdserver: mvcc: database space exceeded");
    expect(etcdctl(s.endpoint, "alarm", "list").stdout).toMatch(/^memberID:\d+ alarm:NOSPACE \n$/);
    const ready = await fetch(`${s.metrics}/readyz`);
    expect([ready.status, (await ready.text()).trim()]).toEqual([503, `alarm NOSPACE: backend ${s.backendUrl}: the database is out of space: database or disk is full`]);
    // reads go on
    const keys = etcdctl(s.endpoint, "get", "full/", "--prefix", "--keys-only").stdout.split("\n").filter((l) => l !== "");
    expect(keys).toHaveLength(acknowledged);

    // the operator makes room (here: grows the file system), frees space and disarms
    expect(spawnSync("mount", ["-o", "remount,size=32m", disk!]).status).toBe(0);
    expect(etcdctl(s.endpoint, "del", "full/", "--prefix").stdout.trim()).toBe(String(acknowledged));
    const rev = JSON.parse(etcdctl(s.endpoint, "endpoint", "status", "-w", "json").stdout)[0].Status.header.revision;
    expect(etcdctl(s.endpoint, "compact", String(rev), "--physical").status).toBe(0);
    expect(etcdctl(s.endpoint, "defrag").status).toBe(0);
    // still refused until disarmed, as etcd
    expect(etcdctl(s.endpoint, "put", "full/early", "v").stderr).toContain("database space exceeded");
    expect(etcdctl(s.endpoint, "alarm", "disarm").stdout).toMatch(/^memberID:\d+ alarm:NOSPACE \n$/);
    expect(etcdctl(s.endpoint, "put", "full/after", "v").stdout).toBe("OK\n");
    expect((await fetch(`${s.metrics}/readyz`)).status).toBe(200);
    // and what was written since survives a crash
    s.kill();
    await s.restart();
    expect(etcdctl(s.endpoint, "get", "full/", "--prefix", "--keys-only").stdout.trim()).toBe("full/after");
  }, 120_000);
});
