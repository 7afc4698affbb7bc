// What a server holds after a kube-apiserver-like load, beside etcd in one run (issue 25's
// memory row): each server starts on a fresh data directory, idles, takes the Go client's
// `apiserver` scenario (test/go: a prefix watch with prev_kv and progress, 3,000 guarded
// creates, updates, deletes and paginated, whole and count lists over one clientv3
// connection) ROUNDS times, then idles again. Prints RSS (VmRSS) idle before, right after
// the load, its peak (VmHWM), and after IDLE seconds of quiet (with its anonymous and
// file-backed parts: RssAnon + RssFile; the file-backed part is code paged in).
// Usage: bun scripts/bench/memory-after-load.ts [--binary FILE] [--rounds N] [--idle S] [--only NAME]
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { startEtcd } from "../../test/support/etcd.ts";
import { type ApiserverReport, runGoScenario } from "../../test/support/go-client.ts";
import { freePort, startStrata } from "../../test/support/strata.ts";
import { sleep } from "./measure.ts";

const { values: opts } = parseArgs({
  options: { binary: { type: "string" }, rounds: { type: "string", default: "1" }, idle: { type: "string", default: "60" }, only: { type: "string", default: "" } },
});
const rounds = Number(opts.rounds);
const idleMs = Number(opts.idle) * 1000;

interface Server {
  endpoint: string;
  pid: number;
  stop(): Promise<unknown>;
}

function status(pid: number, field: string): number {
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
}

/** the executable at `file`, serving SQLite on a fresh data directory */
async function startBinary(file: string): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), "strata-memory-"));
  const port = await freePort();
  const listen = ["--listen", `http://127.0.0.1:${port}`, "--metrics-listen", `http://127.0.0.1:${await freePort()}`];
  const child: ChildProcess = spawn(resolve(file), [...listen, "--data-dir", join(dir, "data")], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  for (let i = 0; ; i++) {
    if (child.exitCode !== null || i > 600) throw new Error(`${file} did not serve: ${stderr}`);
    if (await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false)) break;
    await sleep(50);
  }
  return {
    endpoint: `127.0.0.1:${port}`,
    pid: child.pid!,
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once("exit", r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const subjects: Array<[string, () => Promise<Server>]> = [
  ["etcd", async () => {
    const e = await startEtcd();
    return { endpoint: e.endpoint, pid: e.pid(), stop: () => e.stop() };
  }],
  ["strata, Bun from source", async () => {
    const s = await startStrata();
    return { endpoint: s.endpoint, pid: s.pid(), stop: () => s.stop() };
  }],
  ...(opts.binary ? [["strata executable", () => startBinary(opts.binary!)] as [string, () => Promise<Server>]] : []),
];

console.log(`memory after ${rounds} round(s) of the apiserver scenario (${new Date().toISOString()}, load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")})`);
console.log(`| | idle, MiB | after the load | peak | after ${opts.idle} s idle (anonymous + file) |`);
console.log(`|---|---|---|---|---|`);
for (const [name, start] of subjects.filter(([n]) => n.includes(opts.only))) {
  const server = await start();
  try {
    await sleep(5000);
    const idle = status(server.pid, "VmRSS");
    for (let i = 0; i < rounds; i++) {
      const report = await runGoScenario<ApiserverReport>(["apiserver", server.endpoint], 300_000);
      if (report.errors.length > 0) throw new Error(`${name}: ${report.errors.slice(0, 3).join("; ")}`);
    }
    const after = status(server.pid, "VmRSS");
    const peak = status(server.pid, "VmHWM");
    await sleep(idleMs);
    const rested = status(server.pid, "VmRSS");
    const parts = `${status(server.pid, "RssAnon").toFixed(1)} + ${status(server.pid, "RssFile").toFixed(1)}`;
    console.log(`| ${name} | ${idle.toFixed(1)} | ${after.toFixed(1)} | ${peak.toFixed(1)} | ${rested.toFixed(1)} (${parts}) |`);
  } finally {
    await server.stop();
  }
}
process.exit(0);
