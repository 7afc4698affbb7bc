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
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { startEtcd } from "../../test/support/etcd.ts";
import { freePort } from "../../test/support/strata.ts";

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

interface Server {
  endpoint: string;
  pid: number;
  stop(): Promise<void>;
}
interface Target {
  name: string;
  start(): Promise<Server>;
}

function strataFrom(name: string, root: string): Target {
  return {
    name,
    async start() {
      const dir = mkdtempSync(join(tmpdir(), "strata-checkperf-"));
      const endpoint = `127.0.0.1:${await freePort()}`;
      const profile = values.profile ? ["--cpu-prof-md", `--cpu-prof-dir=${resolve(values.profile)}`] : [];
      const cmd = pin(0, [
        process.execPath, ...profile, join(root, "src/main.ts"), "serve",
        "--listen", `http://${endpoint}`,
        "--backend", `sqlite://${join(dir, "strata.db")}`,
        "--metrics-listen", `http://127.0.0.1:${await freePort()}`,
        ...extra,
      ]);
      const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
      let err = "";
      child.stderr!.on("data", (d) => (err = (err + d).slice(-20_000)));
      await ready(endpoint, child, () => err);
      return {
        endpoint,
        pid: child.pid!,
        stop: async () => {
          const said = err.split("\n").filter((l) => /"level":"(warn|error)"|panic|error:/.test(l) && !/took too long/.test(l));
          if (said.length > 0) console.log(`  ${name} logged:\n${said.slice(-5).join("\n")}`);
          if (child.exitCode === null) {
            child.kill("SIGTERM");
            await new Promise((r) => child.once("exit", r));
          }
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

/** ready once etcdctl can read from it */
async function ready(endpoint: string, child: ChildProcess, stderr: () => string): Promise<void> {
  for (let i = 0; i < 600 && child.exitCode === null; i++) {
    if (spawnSync("etcdctl", [`--endpoints=${endpoint}`, "--dial-timeout=1s", "get", "ready-probe"], { env: { ...process.env, ETCDCTL_API: "3" } }).status === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`strata did not become ready on ${endpoint}: ${stderr()}`);
}

const etcdTarget: Target = {
  name: "etcd",
  async start() {
    const etcd = await startEtcd();
    // every thread it has now; the ones it starts later inherit the mask
    if (values.pinned) spawnSync("taskset", ["-a", "-p", "-c", "0", String(etcd.pid())], { stdio: "ignore" });
    return { endpoint: etcd.endpoint, pid: etcd.pid(), stop: () => etcd.stop() };
  },
};

/** user + system CPU time of a whole process, in ms */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks of 10 ms
}

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
  return { lines: out.split(/[\r\n]+/).map((l) => l.trim()).filter((l) => l !== "" && !/^\d+ \/ \d+/.test(l)), putsCpuMs };
}

const targets: Target[] = [strataFrom("strata", ROOT), ...(baseline ? [strataFrom("baseline", baseline)] : []), ...(values["no-etcd"] ? [] : [etcdTarget])];
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
