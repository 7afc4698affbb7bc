// strata against a real etcd on the same machine, in one run, with the same client
// (etcd3) and the same Kubernetes-shaped workloads; prints throughput, latency and
// server memory with the strata/etcd ratio per row, and writes the results as JSON.
//   bun scripts/bench/main.ts [--backends sqlite,postgres,mariadb,nats] [--objects 5000] [--out bench.json]
// Not a test: nothing here asserts.
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { parseArgs } from "node:util";
import { Etcd3 } from "etcd3";
import { startEtcd } from "../../test/support/etcd.ts";
import { startStrata, stopDatabaseServers } from "../../test/support/strata.ts";

const { values } = parseArgs({
  options: {
    backends: { type: "string", default: "sqlite" },
    objects: { type: "string", default: "5000" },
    out: { type: "string", default: "bench-results.json" },
  },
});
const OBJECTS = Number(values.objects);
const CLIENTS = 64;
const PREFIX = "/registry/pods/";

interface Row {
  workload: string;
  metric: string;
  /** higher is better for throughput, lower for latency and memory */
  better: "higher" | "lower";
  values: Record<string, number>;
}
const rows: Row[] = [];
function record(workload: string, metric: string, better: Row["better"], target: string, value: number) {
  let row = rows.find((r) => r.workload === workload && r.metric === metric);
  if (!row) rows.push((row = { workload, metric, better, values: {} }));
  row.values[target] = value;
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? NaN;

/** runs `op(i)` for i in [0, n) over CLIENTS concurrent loops; returns ops/s and latencies */
async function drive(n: number, op: (i: number) => Promise<unknown>): Promise<{ rate: number; lat: number[] }> {
  let next = 0;
  const lat: number[] = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (next < n) {
      const i = next++;
      const s = performance.now();
      await op(i);
      lat.push(performance.now() - s);
    }
  }));
  return { rate: n / ((performance.now() - t0) / 1000), lat };
}

function rssOf(endpoint: string): number {
  // the server is whichever process listens on the endpoint's port
  const port = endpoint.split(":")[1];
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== "0A" || parseInt(f[1]!.split(":")[1]!, 16) !== Number(port)) continue;
    const inode = f[9];
    for (const pid of readdirPids()) {
      try {
        const fds = readdir(`/proc/${pid}/fd`);
        if (fds.some((fd) => readlink(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`)) {
          const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
          return m ? Number(m[1]) / 1024 : NaN;
        }
      } catch {
        // process gone or not ours to read
      }
    }
  }
  return NaN;
}
import { readdirSync as readdir, readlinkSync as readlink } from "node:fs";
const readdirPids = () => readdir("/proc").filter((d) => /^\d+$/.test(d));

async function bench(target: string, endpoint: string): Promise<void> {
  const c = new Etcd3({ hosts: endpoint, grpcOptions: { "grpc.max_receive_message_length": -1 } } as never);
  const value = (i: number) => Buffer.alloc(1024 + (i * 997) % 3072, 97 + (i % 26));
  const key = (i: number) => Buffer.from(`${PREFIX}ns-${i % 10}/pod-${String(i).padStart(6, "0")}`);
  record("idle", "server RSS MiB", "lower", target, rssOf(endpoint));

  // 1. create through the Kubernetes create txn
  const created = await drive(OBJECTS, (i) =>
    c.kv.txn({
      compare: [{ key: key(i), target: "Mod", result: "Equal", mod_revision: "0" }],
      success: [{ request_put: { key: key(i), value: value(i) } }],
      failure: [{ request_range: { key: key(i) } }],
    } as never));
  record("create (txn, 64 clients)", "ops/s", "higher", target, created.rate);
  record("create (txn, 64 clients)", "p50 ms", "lower", target, pct(created.lat, 0.5));
  record("create (txn, 64 clients)", "p99 ms", "lower", target, pct(created.lat, 0.99));

  // 2. guarded updates on hot keys: compare mod_revision, re-read and retry on conflict
  const hot = Math.min(5000, OBJECTS);
  const updated = await drive(OBJECTS, async (i) => {
    const k = key(i % hot);
    for (;;) {
      const cur = await c.kv.range({ key: k } as never);
      const r = await c.kv.txn({
        compare: [{ key: k, target: "Mod", result: "Equal", mod_revision: cur.kvs[0]!.mod_revision }],
        success: [{ request_put: { key: k, value: value(i + 1) } }],
        failure: [{ request_range: { key: k } }],
      } as never);
      if (r.succeeded) return;
    }
  });
  record("guarded update (64 clients)", "ops/s", "higher", target, updated.rate);
  record("guarded update (64 clients)", "p99 ms", "lower", target, pct(updated.lat, 0.99));

  // 3. point gets
  const gets = await drive(OBJECTS, (i) => c.kv.range({ key: key(i) } as never));
  record("point get (64 clients)", "ops/s", "higher", target, gets.rate);
  record("point get (64 clients)", "p99 ms", "lower", target, pct(gets.lat, 0.99));

  // 4. lists: paginated at the first page's revision, and whole
  const end = Buffer.from(PREFIX.slice(0, -1) + "0");
  let t = performance.now();
  let start = Buffer.from(PREFIX);
  let revision = "0";
  for (;;) {
    const page = await c.kv.range({ key: start, range_end: end, limit: 500, revision } as never);
    if (revision === "0") revision = page.header.revision;
    if (!page.more) break;
    start = Buffer.concat([page.kvs.at(-1)!.key, Buffer.from([0])]);
  }
  record(`paginated list of ${OBJECTS} (limit 500)`, "ms", "lower", target, performance.now() - t);
  t = performance.now();
  await c.kv.range({ key: Buffer.from(PREFIX), range_end: end } as never);
  record(`full list of ${OBJECTS}`, "ms", "lower", target, performance.now() - t);

  // 5. count_only
  t = performance.now();
  for (let i = 0; i < 20; i++) await c.kv.range({ key: Buffer.from(PREFIX), range_end: end, count_only: true } as never);
  record("count_only on the prefix", "ms", "lower", target, (performance.now() - t) / 20);

  // 6. watch delivery latency: 100 prefix watchers while writes run
  const watchers = await Promise.all(Array.from({ length: 100 }, () => c.watch().prefix("/registry/events/").create()));
  const delays: number[] = [];
  for (const w of watchers) w.on("put", (kv) => delays.push(performance.now() - Number(kv.value.toString())));
  for (let i = 0; i < 300; i++) {
    await c.put(`/registry/events/default/e${i}`).value(String(performance.now()));
    await new Promise((r) => setTimeout(r, 2));
  }
  await new Promise((r) => setTimeout(r, 1000));
  await Promise.all(watchers.map((w) => w.cancel()));
  record("watch delivery, 100 watchers", "p50 ms", "lower", target, pct(delays, 0.5));
  record("watch delivery, 100 watchers", "p99 ms", "lower", target, pct(delays, 0.99));

  record(`loaded (${OBJECTS} objects)`, "server RSS MiB", "lower", target, rssOf(endpoint));
  c.close();
}

const targets = ["etcd", ...values.backends!.split(",").map((b) => `strata/${b}`)];
const etcd = await startEtcd();
await bench("etcd", etcd.endpoint);
await etcd.stop();
for (const backend of values.backends!.split(",")) {
  process.env.STRATA_TEST_BACKEND = backend;
  const strata = await startStrata(["--auto-compaction-retention", "0"]);
  await bench(`strata/${backend}`, strata.endpoint);
  await strata.stop();
}
await stopDatabaseServers();

const machine = `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`;
const fmt = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? "–" : n >= 100 ? n.toFixed(0) : n.toFixed(1));
const header = ["workload", "metric", ...targets.flatMap((t) => (t === "etcd" ? [t] : [t, "ratio"]))];
const lines = rows.map((r) => [r.workload, r.metric, ...targets.flatMap((t) => {
  const v = r.values[t];
  if (t === "etcd") return [fmt(v)];
  return [fmt(v), fmt(v !== undefined && r.values.etcd ? v / r.values.etcd : undefined) + "×"];
})]);
console.log(`\nstrata vs etcd ${new Date().toISOString().slice(0, 10)} on ${machine}; client: etcd3 (grpc-js) in one process sharing the machine; ${OBJECTS} objects of 1–4 KiB\n`);
console.log(`| ${header.join(" | ")} |\n|${header.map(() => "---").join("|")}|`);
for (const l of lines) console.log(`| ${l.join(" | ")} |`);
writeFileSync(values.out!, JSON.stringify({ date: new Date().toISOString(), machine, objects: OBJECTS, rows }, null, 2));
console.log(`\nresults written to ${values.out}`);
process.exit(0);
