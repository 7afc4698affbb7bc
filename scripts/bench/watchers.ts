// The cost of watchers to the server (issue 25): etcd's Go client (test/go's strata-gotest,
// clientv3 as kube-apiserver links it) opens many watchers and then writes, against a real
// etcd and against strata on SQLite, one after the other in one run; the server's CPU time
// (user+system from /proc/PID/stat, read by the client around each phase) is what is
// compared, a figure a slow client cannot distort. Each server is pinned to core 0 and the
// client to core 1 when the machine has two cores or more.
// Cases: 20,000 watchers on distinct prefixes over 8 streams, then 2,000 writes that each
// concern one watcher; the same over 20,000 streams (one watcher each); 20,000 watchers on
// one prefix, then one write that reaches all of them (--rounds N: N such writes, each
// once the last reached every watcher), over 8 streams and over 20,000.
//   bun scripts/bench/watchers.ts [--watchers 20000] [--writes 2000] [--rounds 1] [--cases all|distinct|shared] [--runs 1] [--targets etcd,sqlite] [--before DIR]
// --before DIR: an A/B in one run — strata from the checkout DIR (an older tree, with its
// node_modules) runs the same cases right before this tree's, as the target "before".
// Not a test: nothing here asserts.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { startEtcd } from "../../test/support/etcd.ts";
import { goProgram } from "../../test/support/go-client.ts";
import { freshDatabase, startStrata, stopDatabaseServers } from "../../test/support/strata.ts";
import { median, recordRun } from "./measure.ts";

const { values } = parseArgs({
  options: {
    watchers: { type: "string", default: "20000" },
    writes: { type: "string", default: "2000" },
    rounds: { type: "string", default: "1" },
    cases: { type: "string", default: "all" },
    runs: { type: "string", default: "1" },
    targets: { type: "string", default: "etcd,sqlite" },
    before: { type: "string" },
  },
});
const whole = (name: keyof typeof values) => {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive whole number, not ${values[name]}`);
  return n;
};
const WATCHERS = whole("watchers");
const WRITES = whole("writes");
const ROUNDS = whole("rounds");
const RUNS = whole("runs");
const TARGETS = values.targets!.split(",").map((t) => t.trim());
for (const t of TARGETS) if (!["etcd", "sqlite"].includes(t)) throw new Error(`--targets: unknown target ${t} (etcd, sqlite)`);
const BEFORE = values.before ? resolve(values.before) : undefined;
// the older tree runs right before this one, on the same backend
if (BEFORE) TARGETS.splice(TARGETS.includes("sqlite") ? TARGETS.indexOf("sqlite") : TARGETS.length, 0, "before");
const pinned = cpus().length >= 2;

interface Case {
  name: string;
  streams: number;
  clients: number;
  shared: boolean;
}
const ALL_CASES: Case[] = [
  { name: `${WATCHERS} watchers on distinct prefixes, 8 streams`, streams: 8, clients: 1, shared: false },
  { name: `${WATCHERS} watchers on distinct prefixes, ${WATCHERS} streams`, streams: WATCHERS, clients: 8, shared: false },
  { name: `${WATCHERS} watchers on one prefix, 8 streams`, streams: 8, clients: 1, shared: true },
  { name: `${WATCHERS} watchers on one prefix, ${WATCHERS} streams`, streams: WATCHERS, clients: 8, shared: true },
];
if (!["all", "distinct", "shared"].includes(values.cases!)) throw new Error(`--cases: all, distinct or shared, not ${values.cases}`);
const CASES = ALL_CASES.filter((c) => values.cases === "all" || c.shared === (values.cases === "shared"));
const fanOut = ROUNDS === 1 ? "1 write" : `${ROUNDS} writes`;

interface Report {
  rssBeforeMiB: number;
  rssOpenMiB: number;
  openCpuMs: number;
  openSeconds: number;
  writeCpuMs: number;
  writeSeconds: number;
  expected: number;
  delivered: number;
  errors: string[];
}

/** figures[target][case row] = one value per run */
const figures = new Map<string, Map<string, number[]>>();
const record = (target: string, row: string, v: number) => recordRun(figures, target, row, v);

async function runCase(target: string, endpoint: string, pid: number, c: Case): Promise<void> {
  if (pinned) spawnSync("taskset", ["-a", "-p", "-c", "0", String(pid)], { stdio: "ignore" });
  const spec = { pid, watchers: WATCHERS, streams: c.streams, clients: c.clients, writes: WRITES, shared: c.shared, rounds: ROUNDS };
  const prog = await goProgram();
  const cmd = pinned ? ["taskset", "-c", "1", prog] : [prog];
  const r = spawnSync(cmd[0]!, [...cmd.slice(1), "watchers", endpoint, JSON.stringify(spec)], { encoding: "utf8", timeout: 600_000, maxBuffer: 1 << 24 });
  const line = (r.stdout ?? "").trim().split("\n").at(-1) ?? "";
  if (!line.startsWith("{")) throw new Error(`strata-gotest watchers failed on ${target}: ${r.stderr?.slice(-2000)}`);
  const rep = JSON.parse(line) as Report;
  const missing = rep.expected - rep.delivered;
  console.log(`  ${c.name}: open ${rep.openCpuMs.toFixed(0)} ms CPU in ${rep.openSeconds.toFixed(1)} s, RSS ${rep.rssBeforeMiB.toFixed(0)} → ${rep.rssOpenMiB.toFixed(0)} MiB; ` +
    `${c.shared ? fanOut : `${WRITES} writes`} ${rep.writeCpuMs.toFixed(0)} ms CPU, ${rep.delivered}/${rep.expected} events` +
    (rep.errors.length ? `; errors: ${rep.errors.slice(0, 3).join("; ")}` : ""));
  record(target, `${c.name}: open, server CPU ms`, rep.openCpuMs);
  record(target, `${c.name}: open, server RSS growth MiB`, rep.rssOpenMiB - rep.rssBeforeMiB);
  record(target, `${c.name}: ${c.shared ? `${fanOut} to all` : `${WRITES} writes`}, server CPU ms`, missing === 0 ? rep.writeCpuMs : NaN);
}

async function runTarget(target: string): Promise<void> {
  for (const c of CASES) {
    // a fresh server per case, so one case's watchers do not weigh on the next
    if (target === "etcd") {
      const etcd = await startEtcd();
      try {
        await runCase(target, etcd.endpoint, etcd.pid(), c);
      } finally {
        await etcd.stop();
      }
      continue;
    }
    const dir = mkdtempSync(join(tmpdir(), "strata-bench-"));
    const backend = target === "before" ? "sqlite" : target;
    const strata = await startStrata(["--auto-compaction-retention", "0"], await freshDatabase(backend, dir), "bun", undefined, target === "before" ? BEFORE : undefined);
    try {
      await runCase(label(target), strata.endpoint, strata.pid(), c);
    } finally {
      await strata.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

function label(target: string): string {
  return target === "etcd" ? "etcd" : target === "before" ? "strata/sqlite before" : `strata/${target}`;
}

const load = loadavg()[0]!.toFixed(2);
for (let run = 0; run < RUNS; run++) {
  for (const t of TARGETS) {
    console.log(`${label(t)}${RUNS > 1 ? ` (run ${run + 1} of ${RUNS})` : ""} ...`);
    await runTarget(t);
  }
}
await stopDatabaseServers();

const names = [...figures.keys()];
const rows = [...(figures.get(names[0]!)?.keys() ?? [])];
console.log(`\nserver CPU time and memory, ${RUNS > 1 ? `medians of ${RUNS} runs, ` : ""}load average ${load} before the run${pinned ? ", servers on core 0, client on core 1" : ""}\n`);
console.log(`| | ${names.join(" | ")} | ${names.slice(1).map((n) => `${n} ÷ etcd`).join(" | ")} |`);
console.log(`|---|${names.map(() => "---").join("|")}|${names.slice(1).map(() => "---").join("|")}|`);
for (const row of rows) {
  const vals = names.map((n) => median(figures.get(n)?.get(row) ?? []));
  const ratios = vals.slice(1).map((v) => (vals[0] ? (v / vals[0]).toFixed(2) : "-"));
  console.log(`| ${row} | ${vals.map((v) => (Number.isNaN(v) ? "missing events" : v.toFixed(0))).join(" | ")} | ${ratios.join(" | ")} |`);
}
process.exit(0);
