// `bun scripts/bench/front-door.ts [--binary FILE] [--compare FILE] [--runs N] [--only NAME]`: what a new user meets first,
// for strata's executable, strata run by Bun from source, and etcd, in one run: the file's
// size, `--version`'s time, the time from start to the first etcdctl answer, and the memory
// resident once the server idles. Without --binary the host's executable is built first
// (build/build.ts). Medians of N runs (default 5); each server gets a fresh data directory. --compare adds
// another executable (an earlier build, for an A/B in the same run). --only
// measures only the subjects whose name contains NAME ("executable", "source", "etcd").
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { compile, hostTarget } from "../../build/build.ts";
import { freePort } from "../databases.ts";
import { median, sleep } from "./measure.ts";

const ROOT = resolve(import.meta.dir, "../..");
/** how long a started server is left alone before its idle memory is read */
const IDLE_MS = 5_000;

interface Subject {
  name: string;
  /** the file a user runs (its size is reported) */
  file: string;
  /** the command line up to the first argument */
  cmd: string[];
  /** arguments that serve on a fresh data directory at a client port (and a second, free port) */
  serveArgs(dir: string, client: number, spare: number): string[];
}

const { values: opts } = parseArgs({ options: { binary: { type: "string" }, compare: { type: "string" }, runs: { type: "string", default: "5" }, only: { type: "string", default: "" } } });
const runs = Number(opts.runs);
const work = mkdtempSync(join(tmpdir(), "strata-front-door-"));

function strataArgs(dir: string, client: number, spare: number): string[] {
  return ["--listen", `http://127.0.0.1:${client}`, "--metrics-listen", `http://127.0.0.1:${spare}`, "--data-dir", dir];
}

function subjects(binary: string): Subject[] {
  const bun = join(ROOT, "node_modules/.bin/bun");
  const etcd = spawnSync("sh", ["-c", "command -v etcd"], { encoding: "utf8" }).stdout.trim() || "/usr/bin/etcd";
  return [
    { name: "strata executable", file: binary, cmd: [binary], serveArgs: strataArgs },
    ...(opts.compare ? [{ name: `strata executable ${basename(opts.compare)}`, file: opts.compare, cmd: [opts.compare], serveArgs: strataArgs }] : []),
    { name: "strata, Bun from source", file: bun, cmd: [bun, join(ROOT, "src/main.ts")], serveArgs: strataArgs },
    {
      name: "etcd",
      file: etcd,
      cmd: [etcd],
      serveArgs: (dir, client, peer) => [
        "--data-dir", dir,
        "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
        "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
        "--initial-cluster", `default=http://127.0.0.1:${peer}`,
      ],
    },
  ];
}

/** wall time of `cmd --version`, seconds */
function versionTime(s: Subject): number {
  const t0 = performance.now();
  const r = spawnSync(s.cmd[0]!, [...s.cmd.slice(1), "--version"], { stdio: ["ignore", "pipe", "pipe"] });
  if (r.status !== 0) throw new Error(`${s.name} --version failed: ${r.stderr}`);
  return (performance.now() - t0) / 1000;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, "127.0.0.1");
    sock.once("connect", () => (sock.destroy(), resolve(true)));
    sock.once("error", () => resolve(false));
  });
}

/** user+system CPU seconds the process has used (its threads included) */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  // utime and stime are fields 14 and 15 of stat, in clock ticks (100 a second on Linux)
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(status.match(/VmRSS:\s+(\d+) kB/)![1]) / 1024;
}

/**
 * Starts the server, waits (polling every 5 ms) until its port accepts, then runs one
 * `etcdctl get`: seconds from spawn until that answer is back, and the RSS after IDLE_MS.
 */
async function serveOnce(s: Subject): Promise<{ firstAnswer: number; firstCpu: number; idleRss: number }> {
  const dir = mkdtempSync(join(work, "data-"));
  const client = await freePort();
  const spare = await freePort();
  let stderr = "";
  const t0 = performance.now();
  const child: ChildProcess = spawn(s.cmd[0]!, [...s.cmd.slice(1), ...s.serveArgs(join(dir, "data"), client, spare)], {
    stdio: ["ignore", "ignore", "pipe"],
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("STRATA_"))),
  });
  child.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  try {
    for (let i = 0; !(await accepts(client)); i++) {
      if (child.exitCode !== null || i > 6000) throw new Error(`${s.name} did not listen: ${stderr}`);
      await sleep(5);
    }
    for (let i = 0; ; i++) {
      const r = spawnSync("etcdctl", [`--endpoints=127.0.0.1:${client}`, "--dial-timeout=5s", "get", "front-door"], { encoding: "utf8" });
      if (r.status === 0) break;
      if (i > 50) throw new Error(`${s.name} gave etcdctl no answer: ${r.stderr}`);
    }
    const firstAnswer = (performance.now() - t0) / 1000;
    const firstCpu = cpuSeconds(child.pid!);
    await sleep(IDLE_MS);
    return { firstAnswer, firstCpu, idleRss: rssMiB(child.pid!) };
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once("exit", r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

const mib = (bytes: number) => bytes / 1024 / 1024;

try {
  let binary = opts.binary;
  if (!binary) {
    binary = join(work, "strata");
    await compile(hostTarget(), binary);
  }
  console.log(`front door, medians of ${runs} (${new Date().toISOString()}, load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")})`);
  console.log(`| | size, MiB | --version, s | start to first etcdctl answer, s | its CPU until then, s | idle RSS, MiB |`);
  console.log(`|---|---|---|---|---|---|`);
  for (const s of subjects(binary).filter((s) => s.name.includes(opts.only))) {
    const version: number[] = [];
    const first: number[] = [];
    const cpu: number[] = [];
    const rss: number[] = [];
    for (let i = 0; i < runs; i++) {
      version.push(versionTime(s));
      const r = await serveOnce(s);
      first.push(r.firstAnswer);
      cpu.push(r.firstCpu);
      rss.push(r.idleRss);
    }
    const size = s.name.includes("source") ? "(Bun itself)" : mib(statSync(s.file).size).toFixed(1);
    console.log(`| ${s.name} | ${size} | ${median(version).toFixed(3)} | ${median(first).toFixed(3)} | ${median(cpu).toFixed(2)} | ${median(rss).toFixed(1)} |`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
