// Server CPU per operation, strata against a real etcd (issue 25). Each server runs alone,
// one after the other in the same run, pinned to core 0 (`taskset`, every thread), with
// etcd's Go client (test/go's `strata-gotest kvbench`: clientv3 on grpc-go, as
// kube-apiserver links it) pinned to core 1 driving creates through the create txn,
// guarded updates, point gets, full lists and counts. Beside throughput and latency it
// reports the server's CPU time per operation (user+system of the whole process, every
// thread, from /proc/PID/stat, over each phase ÷ its operations) — the figure a busy
// machine or a slow client distorts least — and the server's RSS.
//   npm run bench -- [--quick] [--runs 3] [--keys 20000] [--clients 64] [--value-bytes 2048]
//                    [--baseline DIR [--no-etcd]] [--profile DIR] [--out bench-kv.json]
// Sizes: --updates, --gets, --lists, --counts (0 skips a phase), --conns (client
// connections), --warmup (operations of each kind on keys of their own before measuring:
// Bun compiles hot code for seconds after it starts).
// --baseline DIR adds strata from another source tree (with its own node_modules, e.g. a
// `git archive` of the commit before a change) as a third target: an A/B in the same run.
// --no-etcd leaves etcd out (an A/B of two strata builds alone).
// --profile DIR writes Bun's CPU profile of each strata run there (as Markdown; with
// --profile-format chrome as a .cpuprofile, read by scripts/bench/profile-summary.ts).
// The order of the targets turns with each run, so drift on the machine falls on each alike.
// Not a test: nothing here asserts.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { etcdVersion } from "../../test/support/etcd.ts";
import { goProgram } from "../../test/support/go-client.ts";
import { median, recordRun } from "./measure.ts";
import { etcdTarget, strataTarget, type Target } from "./targets.ts";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    runs: { type: "string" },
    keys: { type: "string" },
    updates: { type: "string" },
    gets: { type: "string" },
    lists: { type: "string" },
    counts: { type: "string" },
    warmup: { type: "string" },
    clients: { type: "string", default: "64" },
    conns: { type: "string", default: "1" },
    "value-bytes": { type: "string", default: "2048" },
    baseline: { type: "string" },
    "no-etcd": { type: "boolean", default: false },
    profile: { type: "string" },
    "profile-format": { type: "string", default: "md" },
    out: { type: "string", default: "bench-kv.json" },
  },
});
const quick = values.quick!;
const whole = (name: keyof typeof values, normal: number, small: number) => {
  const given = values[name];
  const n = given === undefined ? (quick ? small : normal) : Number(given);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, not ${given}`);
  return n;
};
const RUNS = whole("runs", 3, 1);
const spec = {
  clients: whole("clients", 64, 64),
  conns: whole("conns", 1, 1),
  keys: whole("keys", 20_000, 5_000),
  valueBytes: whole("value-bytes", 2048, 2048),
  updates: whole("updates", 20_000, 5_000),
  gets: whole("gets", 50_000, 10_000),
  lists: whole("lists", 10, 5),
  counts: whole("counts", 200, 100),
  warmup: whole("warmup", 5_000, 2_000),
};
const ROOT = resolve(import.meta.dir, "../..");
const baseline = values.baseline ? resolve(values.baseline) : undefined;
if (baseline && !existsSync(join(baseline, "src/main.ts"))) throw new Error(`--baseline ${baseline}: no src/main.ts there`);
const pinned = cpus().length >= 2 && spawnSync("taskset", ["-V"]).status === 0;

// Bun's sampling profiler, written when a server exits: Markdown, or with --profile-format
// chrome the Chrome format, whose samples are not weighted by time
const profile = values.profile ? [values["profile-format"] === "chrome" ? "--cpu-prof" : "--cpu-prof-md", `--cpu-prof-dir=${resolve(values.profile)}`] : [];
// etcd's default: no automatic compaction
const strataFrom = (name: string, root: string) => strataTarget(name, root, { pinned, bunArgs: profile, serveArgs: ["--auto-compaction-retention", "0"] });
const targets: Target[] = [...(values["no-etcd"] ? [] : [etcdTarget(pinned)]), strataFrom("strata/sqlite", ROOT)];
if (baseline) targets.push(strataFrom("baseline", baseline));

interface Phase {
  name: string;
  ops: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  cpuMs: number;
  rssMiB: number;
  retries: number;
}
interface KvReport {
  phases: Phase[];
  peakMiB: number;
  errors: string[];
}

/** figures[row][target] = one value per run */
const figures = new Map<string, Map<string, number[]>>();
const record = (row: string, target: string, v: number) => recordRun(figures, row, target, v);

/** lists and counts are few and slow: milliseconds; the rest microseconds */
const slow = (phase: string) => phase === "full list" || phase === "count";

/** runs the Go client, pinned to core 1, and returns its report */
async function kvbench(endpoint: string, pid: number): Promise<KvReport> {
  const args = [await goProgram(), "kvbench", endpoint, JSON.stringify({ pid, ...spec })];
  const cmd = pinned ? ["taskset", "-c", "1", ...args] : args;
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err = (err + d).slice(-4000)));
  const code = await new Promise<number | null>((r) => child.once("close", r));
  const line = out.trim().split("\n").at(-1) ?? "";
  if (code !== 0 || !line.startsWith("{")) throw new Error(`strata-gotest kvbench: exit code ${code}\n${out}\n${err}`);
  return JSON.parse(line) as KvReport;
}

async function measure(t: Target): Promise<void> {
  const server = await t.start();
  // anonymous memory apart: mapped file pages (etcd's bbolt, strata's read threads' SQLite
  // file) are the page cache's and count in the peak RSS
  let peakAnon = 0;
  const sampler = setInterval(() => (peakAnon = Math.max(peakAnon, anonymousMiB(server.pid))), 100);
  try {
    const rep = await kvbench(server.endpoint, server.pid).catch((e) => {
      throw new Error(`${t.name}: ${(e as Error).message}`);
    });
    if (rep.errors.length > 0) console.log(`  ${t.name}: ${rep.errors.length} errors, first: ${rep.errors.slice(0, 3).join("; ")}`);
    for (const p of rep.phases) {
      if (slow(p.name)) {
        record(`${p.name}: time ms (p50)`, t.name, p.p50Ms);
        record(`${p.name}: server CPU ms/op`, t.name, p.cpuMs / p.ops);
      } else {
        record(`${p.name}: ops/s`, t.name, p.opsPerSec);
        record(`${p.name}: p50 ms`, t.name, p.p50Ms);
        record(`${p.name}: p99 ms`, t.name, p.p99Ms);
        record(`${p.name}: server CPU µs/op`, t.name, (p.cpuMs * 1000) / p.ops);
      }
      if (p.name === "create") record(`server RSS MiB after the creates`, t.name, p.rssMiB);
      if (p.retries) console.log(`  ${t.name}: ${p.retries} update conflicts retried`);
    }
    record("server peak RSS MiB", t.name, rep.peakMiB);
    record("server peak anonymous MiB (sampled every 100 ms)", t.name, peakAnon);
    const line = rep.phases.map((p) => `${p.name} ${p.opsPerSec.toFixed(0)}/s ${((p.cpuMs * 1000) / p.ops).toFixed(0)} µs CPU/op`).join(", ");
    console.log(`  ${t.name}: ${line}`);
  } finally {
    clearInterval(sampler);
    await server.stop();
  }
}

/** the process's RssAnon, MiB (0 once it is gone) */
function anonymousMiB(pid: number): number {
  try {
    return Number(/RssAnon:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

const loadBefore = loadavg().map((l) => l.toFixed(2)).join(" ");
const started = Date.now();
console.log(`${RUNS} run(s) of ${targets.map((t) => t.name).join(", ")}; ${pinned ? "servers on core 0, client on core 1" : "NOT pinned (needs 2 cores and taskset)"}`);
for (let run = 0; run < RUNS; run++) {
  // each run starts with the next target, so none always goes first
  const order = targets.map((_, i) => targets[(i + run) % targets.length]!);
  for (const t of order) {
    console.log(`${t.name}${RUNS > 1 ? ` (run ${run + 1} of ${RUNS})` : ""} ...`);
    await measure(t);
  }
}
const loadAfter = loadavg().map((l) => l.toFixed(2)).join(" ");

const names = targets.map((t) => t.name);
const others = names.includes("etcd") ? names.filter((n) => n !== "etcd") : [];
const fmt = (n: number) => (Number.isNaN(n) ? "–" : n >= 100 ? n.toFixed(0) : n.toFixed(n >= 10 ? 1 : 2));
const header = ["row", ...names, ...others.map((n) => `${n} ÷ etcd`), ...(baseline ? ["strata/sqlite ÷ baseline"] : [])];
const lines = [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`];
const medians: Record<string, Record<string, number>> = {};
for (const [row, byTarget] of figures) {
  const m = Object.fromEntries(names.map((n) => [n, median(byTarget.get(n) ?? [])]));
  medians[row] = m;
  const ratios = others.map((n) => `${(m[n]! / m.etcd!).toFixed(2)}×`);
  const ab = baseline ? [`${(m["strata/sqlite"]! / m.baseline!).toFixed(2)}×`] : [];
  lines.push(`| ${[row, ...names.map((n) => fmt(m[n]!)), ...ratios, ...ab].join(" | ")} |`);
}
const [major, minor, patch] = etcdVersion();
const conditions = `${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC; ${cpus().length} × ${cpus()[0]?.model.trim()}; ` +
  `etcd ${major}.${minor}.${patch}; ${RUNS > 1 ? `medians of ${RUNS} runs` : "one run"}; ${spec.keys} keys of ${spec.valueBytes} B, ${spec.clients} clients on ${spec.conns} connection(s); ` +
  `load average ${loadBefore} before, ${loadAfter} after; ${((Date.now() - started) / 60_000).toFixed(1)} min`;
console.log(`\n${conditions}\n\n${lines.join("\n")}`);
writeFileSync(values.out!, JSON.stringify({ conditions, spec, medians, runs: Object.fromEntries([...figures].map(([r, m]) => [r, Object.fromEntries(m)])) }, null, 2));
console.log(`\nresults written to ${values.out}`);
process.exit(0);
