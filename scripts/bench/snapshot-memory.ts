// Maintenance.Snapshot's memory on a large store: fills a SQLite store through strata
// with --megabytes of 10 kB values, runs `etcdctl snapshot save` while sampling strata's
// resident memory, then pauses a raw gRPC client mid-stream to show a slow reader does
// not make strata buffer the file. Prints the figures; not a test.
//   bun scripts/bench/snapshot-memory.ts [--megabytes 500]
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { Etcd3 } from "etcd3";
import { freePort } from "../databases.ts";

const { values } = parseArgs({ options: { megabytes: { type: "string", default: "500" } } });
const dir = mkdtempSync(join(tmpdir(), "strata-snapshot-memory-"));
const port = await freePort();
const endpoint = `127.0.0.1:${port}`;
const child = spawn(process.execPath, [resolve(import.meta.dir, "../../src/main.ts"), "serve", "--listen", `http://${endpoint}`, "--backend", `sqlite://${join(dir, "s.db")}`, "--metrics-listen", "", "--quota-backend-bytes", String(8 * 1024 ** 3)], { stdio: ["ignore", "ignore", "pipe"] });
let log = "";
child.stderr!.on("data", (d) => (log += d));
const mib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))![1]) / 1024;
try {
  const c = new Etcd3({ hosts: endpoint });
  for (;;) {
    try {
      await c.get("probe").exec();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const value = Buffer.alloc(10_000, "x");
  const n = Math.ceil((Number(values.megabytes) * 1e6) / value.length);
  const t0 = Date.now();
  for (let i = 0; i < n; i += 40) {
    await Promise.all([0, 10, 20, 30].map((o) =>
      c.kv.txn({ compare: [], success: Array.from({ length: 10 }, (_, j) => ({ request_put: { key: Buffer.from(`/registry/configmaps/ns-${(i + o + j) % 100}/cm-${i + o + j}`), value } })), failure: [] } as never)
    ));
  }
  c.close();
  console.log(`store: ${n} keys of 10 kB in ${((Date.now() - t0) / 1000).toFixed(0)} s, SQLite file ${(statSync(join(dir, "s.db")).size / 1e6).toFixed(0)} MB; strata RSS ${mib("VmRSS").toFixed(0)} MiB`);

  const samples: number[] = [];
  const timer = setInterval(() => samples.push(mib("VmRSS")), 100);
  const t1 = Date.now();
  const file = join(dir, "snap.db");
  // not spawnSync: the sampling timer must keep running
  const save = spawn("etcdctl", ["--endpoints", endpoint, "--command-timeout", "600s", "snapshot", "save", file], { env: { ...process.env, ETCDCTL_API: "3" } });
  let saveErr = "";
  save.stderr.on("data", (d) => (saveErr = (saveErr + d).slice(-2000)));
  const status = await new Promise((r) => save.on("close", r));
  clearInterval(timer);
  if (status !== 0) throw new Error(saveErr);
  console.log(`etcdctl snapshot save: ${((Date.now() - t1) / 1000).toFixed(1)} s, ${(statSync(file).size / 1e6).toFixed(0)} MB; strata RSS during: ${Math.min(...samples).toFixed(0)}–${Math.max(...samples).toFixed(0)} MiB`);

  const client = new grpc.Client(endpoint, grpc.credentials.createInsecure());
  const stream = client.makeServerStreamRequest("/etcdserverpb.Maintenance/Snapshot", (x: Buffer) => x, (x: Buffer) => x, Buffer.alloc(0));
  let got = 0;
  stream.on("data", (d: Buffer) => (got += d.length));
  stream.pause();
  const paused: number[] = [];
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 500));
    paused.push(mib("VmRSS"));
  }
  console.log(`a client that does not read for 10 s (got ${(got / 1e6).toFixed(1)} MB): strata RSS ${paused.map((x) => x.toFixed(0)).join(" ")} MiB`);
  stream.resume();
  await new Promise((r) => stream.on("end", r));
  client.close();
  console.log(`then read it all (${(got / 1e6).toFixed(0)} MB); strata peak RSS over the run ${mib("VmHWM").toFixed(0)} MiB`);
} finally {
  child.kill();
  rmSync(dir, { recursive: true, force: true });
}
