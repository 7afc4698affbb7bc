// etcd's own load check, `etcdctl check perf` (issue 25: "--load=l passes on SQLite"), against
// strata on SQLite and a real etcd 3.4 in one run, one server after the other on a fresh
// database. etcd 3.4's check (etcdctl/ctlv3/command/check.go): 500 clients, each on its own
// connection, put 256-byte keys with 1 KiB values for 60 s at up to 8,000/s (one shared rate
// limiter), then one delete of every key written. PASS needs no failed request, more than
// 90% of the rate (7,200 writes/s), the slowest put ≤ 0.5 s and a standard deviation ≤ 0.1 s.
// Beside etcdctl's verdict: the server's CPU time (user + system of all its threads,
// /proc/PID/stat) over the whole check and over its 60 s of puts, per put, and the load
// average before and after.
//   bun scripts/bench/check-perf.ts [--load l] [--runs 1] [--pinned: server on core 0, etcdctl on core 1]
//     [--baseline DIR: strata from another source tree as a third target] [--no-etcd]
//     [--args "--flag value ...": extra flags for strata] [--profile DIR: Bun's CPU profile of each strata, as Markdown]
// Not a test: nothing here asserts.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { cpuMs, etcdTarget, strataTarget, type Target } from "./targets.ts";

const { values } = parseArgs({
  options: {
    load: { type: "string", default: "l" },
    runs: { type: "string", default: "1" },
    pinned: { type: "boolean", default: false },
    baseline: { type: "string" },
    "no-etcd": { type: "boolean", default: false },
    args: { type: "string", default: "" },
    profile: { type: "string" },
  },
});
if (!["s", "m", "l", "xl"].includes(values.load!)) throw new Error(`--load must be s, m, l or xl, not ${values.load}`);
const RUNS = Number(values.runs);
if (!Number.isInteger(RUNS) || RUNS <= 0) throw new Error(`--runs must be a positive whole number, not ${values.runs}`);
const ROOT = resolve(import.meta.dir, "../..");
const baseline = values.baseline ? resolve(values.baseline) : undefined;
if (baseline && !existsSync(join(baseline, "src/main.ts"))) throw new Error(`--baseline ${baseline}: no src/main.ts there`);
const extra = values.args!.split(" ").filter((a) => a !== "");
const pin = (core: number, cmd: string[]) => (values.pinned ? ["taskset", "-c", String(core), ...cmd] : cmd);

/** etcdctl's lines, and the server's CPU time (ms) over the 60 s of puts (sampled when they end) */
async function checkPerf(endpoint: string, pid: number): Promise<{ lines: string[]; putsCpuMs: number }> {
  const cpu0 = cpuMs(pid);
  let putsCpuMs = NaN;
  const putsEnd = setTimeout(() => (putsCpuMs = cpuMs(pid) - cpu0), 60_500);
  const cmd = pin(1, ["etcdctl", `--endpoints=${endpoint}`, "check", "perf", `--load=${values.load}`]);
  const child = spawn(cmd[0]!, cmd.slice(1), { env: { ...process.env, ETCDCTL_API: "3" }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const stuck = setTimeout(() => child.kill("SIGKILL"), 200_000);
  await new Promise((r) => child.once("close", r));
  clearTimeout(stuck);
  clearTimeout(putsEnd);
  // a check whose final delete was quick ended before the mark: its whole time is the puts'
  if (Number.isNaN(putsCpuMs)) putsCpuMs = cpuMs(pid) - cpu0;
  return { lines: out.split(/[\r\n]+/).map((l) => l.trim()).filter((l) => l !== "" && !/^\d+ \/ \d+/.test(l)), putsCpuMs };
}

const profile = values.profile ? ["--cpu-prof-md", `--cpu-prof-dir=${resolve(values.profile)}`] : [];
const strataFrom = (name: string, root: string) => strataTarget(name, root, { pinned: values.pinned!, bunArgs: profile, serveArgs: extra, logLines: 5 });
const targets: Target[] = [strataFrom("strata", ROOT), ...(baseline ? [strataFrom("baseline", baseline)] : []), ...(values["no-etcd"] ? [] : [etcdTarget(values.pinned!)])];
const load = () => loadavg().map((l) => l.toFixed(2)).join(" ");
console.log(`etcdctl check perf --load=${values.load}, ${RUNS} run(s) of ${targets.map((t) => t.name).join(", ")}; ${values.pinned ? "server on core 0, etcdctl on core 1" : "not pinned"}`);
for (let run = 0; run < RUNS; run++) {
  // the order turns with each run
  for (const t of [...targets.slice(run % targets.length), ...targets.slice(0, run % targets.length)]) {
    const server = await t.start();
    try {
      const before = load();
      const cpu0 = cpuMs(server.pid);
      const { lines, putsCpuMs } = await checkPerf(server.endpoint, server.pid);
      const cpu = cpuMs(server.pid) - cpu0;
      const rate = Number(/(\d+) writes\/s/.exec(lines.join(" "))?.[1] ?? NaN);
      // the check runs 60 s at the rate it reached, then deletes every key in one request
      const perPut = (putsCpuMs * 1000) / (rate * 60);
      console.log(`${t.name} (run ${run + 1}, load ${before} → ${load()}): ${lines.join(" | ")} | server CPU ${(cpu / 1000).toFixed(1)} s in all, ${(putsCpuMs / 1000).toFixed(1)} s over the puts: ~${perPut.toFixed(0)} µs a put`);
    } finally {
      await server.stop();
    }
  }
}
