// etcd 3.4's own end-to-end suite (tests/e2e of Debian's golang-etcd-server-dev), run
// against Debian's etcd or against strata behind test/support/etcd-wrapper.ts. The suite
// is built once with Debian's Go in GOPATH mode into .tmp/etcd-e2e (gitignored), named by
// a hash of what it is built from. It starts `etcd` and `etcdctl` from a bin dir and
// always uses ports 20000-20020, so one run at a time: a lock file says who runs.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync,
  symlinkSync, writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { tmpdir } from "node:os";
import { DEBIAN_GOPATH, goEnv } from "./go-client.ts";

const ROOT = resolve(import.meta.dir, "../..");
export const CACHE = join(ROOT, ".tmp/etcd-e2e");
const ETCD_SRC = join(DEBIAN_GOPATH, "src/go.etcd.io/etcd");
const SUITE_SRC = join(ETCD_SRC, "tests/e2e");
const WRAPPER = join(import.meta.dir, "etcd-wrapper.ts");

export type Target = "etcd" | "strata";
export type Status = "pass" | "fail" | "skip" | "crashed" | "not run";

export interface TestResult {
  name: string;
  status: Status;
  seconds: number;
  /** the first line the test failed with */
  reason?: string;
  /** the test started a cluster of several members (the wrapper refuses: strata has no raft) */
  clustered: boolean;
}

function hashOf(): string {
  const h = createHash("sha256");
  h.update(spawnSync("go", ["version"], { encoding: "utf8" }).stdout ?? "");
  h.update(readFileSync(join(ETCD_SRC, "version/version.go")));
  for (const f of readdirSync(SUITE_SRC).sort()) h.update(f).update("\0").update(readFileSync(join(SUITE_SRC, f))).update("\0");
  return h.digest("hex").slice(0, 16);
}

/** The suite's test binary, built on first use (about 40 s on a cold Go cache); `builtMs` when it was built now. */
export async function suiteBinary(): Promise<{ path: string; builtMs?: number }> {
  if (!existsSync(SUITE_SRC)) throw new Error(`${SUITE_SRC} is missing: apt-get install golang-etcd-server-dev golang-go`);
  const path = join(CACHE, `e2e-${hashOf()}.test`);
  if (existsSync(path)) return { path };
  mkdirSync(CACHE, { recursive: true });
  const partial = `${path}.${process.pid}.partial`;
  const started = performance.now();
  const r = await new Promise<{ code: number | null; out: string }>((done) => {
    const child = spawn("go", ["test", "-c", "-o", partial, "go.etcd.io/etcd/tests/e2e"], { env: goEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (out += d));
    child.once("close", (code) => done({ code, out }));
  });
  if (r.code !== 0) {
    rmSync(partial, { force: true });
    throw new Error(`go test -c go.etcd.io/etcd/tests/e2e failed:\n${r.out}`);
  }
  // renamed into place whole, so a concurrent run never starts a half-written binary
  renameSync(partial, path);
  return { path, builtMs: Math.round(performance.now() - started) };
}

/** A bin dir with `etcd` (Debian's, or the wrapper that starts strata) and Debian's `etcdctl`. */
function binDir(target: Target): string {
  const dir = join(CACHE, "bin", target);
  mkdirSync(dir, { recursive: true });
  link("/usr/bin/etcdctl", join(dir, "etcdctl"));
  if (target === "etcd") {
    link("/usr/bin/etcd", join(dir, "etcd"));
  } else {
    // exec: the suite's SIGKILL reaches strata itself
    const bun = join(ROOT, "node_modules/.bin/bun");
    writeFileSync(join(dir, "etcd"), `#!/bin/sh\nexec '${bun}' '${WRAPPER}' "$@"\n`, { mode: 0o755 });
  }
  return dir;
}

function link(target: string, path: string): void {
  try {
    if (readlinkSync(path) === target) return;
  } catch {}
  rmSync(path, { force: true });
  symlinkSync(target, path);
}

/**
 * The directory the suite runs in: some tests name the fixtures as
 * ../../integration/fixtures, relative to tests/e2e, and write files beside them.
 */
function workDir(): string {
  const cwd = join(CACHE, "work/tests/e2e");
  mkdirSync(cwd, { recursive: true });
  mkdirSync(join(CACHE, "work/integration"), { recursive: true });
  link(join(ETCD_SRC, "integration/fixtures"), join(CACHE, "work/integration/fixtures"));
  return cwd;
}

/** the names of the suite's tests that match a -run regex */
export async function listTests(pattern: string): Promise<string[]> {
  const { path } = await suiteBinary();
  const r = spawnSync(path, ["-test.list", pattern], { encoding: "utf8", cwd: workDir() });
  if (r.status !== 0) throw new Error(`listing the e2e tests failed: ${r.stderr}`);
  return r.stdout.split("\n").filter((l) => /^Test\w+$/.test(l));
}

export interface RunOptions {
  /** the whole output of the suite (and of every etcd and etcdctl it starts) goes here */
  logFile: string;
  /** each test's result as it ends */
  onResult?: (r: TestResult) => void;
  /** the most one test may take (passed on as -test.timeout; 10 minutes unless told) */
  timeoutMs?: number;
}

/**
 * Runs the named tests against etcd or strata, each in a start of the suite of its own:
 * a test that fails can leave its server running on the suite's fixed ports (the suite
 * closes its cluster only on success), and the next test would then meet that one. A test
 * during which the suite's process ended (a panic, its timeout) counts as crashed.
 */
export async function runSuite(target: Target, names: string[], o: RunOptions): Promise<Map<string, TestResult>> {
  const { path } = await suiteBinary();
  const unlock = await lock();
  const log = createWriteStream(o.logFile);
  const results = new Map<string, TestResult>();
  try {
    for (const name of names) {
      const running = await runOnce(path, target, name, o, log, results);
      if (running) {
        const r: TestResult = { name, status: "crashed", seconds: 0, reason: running.reason ?? "the suite's process ended during this test", clustered: running.clustered };
        results.set(name, r);
        o.onResult?.(r);
      }
      if (!results.has(name)) results.set(name, { name, status: "not run", seconds: 0, clustered: false });
    }
  } finally {
    await new Promise((r) => log.end(r));
    unlock();
  }
  return results;
}

interface Running {
  name: string;
  reason?: string;
  clustered: boolean;
}

/**
 * Reads the suite's `go test -v` output line by line. With EXPECT_DEBUG the suite also
 * prints every line its etcd and etcdctl print, and one that lacks its newline glues the
 * next "--- PASS" or "=== RUN" onto its end (after any byte: etcdctl prints protobuf too),
 * so those are matched anywhere in a line; a subtest's name has a "/" and is not matched.
 */
export class OutputReader {
  /** the test started and not yet ended */
  current: Running | undefined;
  constructor(private readonly ended: (r: TestResult) => void) {}

  line(line: string): void {
    const run = line.match(/=== RUN {3}(Test\w+)$/);
    if (run) {
      this.current = { name: run[1]!, clustered: false };
      return;
    }
    const end = line.match(/--- (PASS|FAIL|SKIP): (Test\w+) \(([\d.]+)s\)$/);
    if (end) {
      const current = this.current?.name === end[2] ? this.current : undefined;
      this.ended({
        name: end[2]!, status: end[1]!.toLowerCase() as Status, seconds: Number(end[3]), clustered: current?.clustered ?? false,
        ...(end[1] === "FAIL" && { reason: current?.reason ?? "failed without a message" }),
      });
      this.current = undefined;
      return;
    }
    if (!this.current) return;
    if (line.includes("etcd-wrapper: clustered")) this.current.clustered = true;
    // the test's own messages ("    ctl_v3_kv_test.go:193: ..."); the last is the one it failed with
    const msg = line.match(/ {4}\w+\.go:\d+: (.*)$/);
    if (msg) this.current.reason = msg[1]!.slice(0, 300);
  }
}

/** The results in a saved log of runs (the last result of each test wins). */
export function readLog(text: string): Map<string, TestResult> {
  const results = new Map<string, TestResult>();
  const reader = new OutputReader((r) => results.set(r.name, r));
  for (const line of text.split("\n")) reader.line(line);
  return results;
}

/** One start of the suite for one test; returns it if it was still running when the suite ended. */
function runOnce(binary: string, target: Target, name: string, o: RunOptions, log: NodeJS.WritableStream, results: Map<string, TestResult>): Promise<Running | undefined> {
  const env: NodeJS.ProcessEnv = { ...process.env, EXPECT_DEBUG: "1" };
  // the suite sets what etcdctl needs; strata's own settings would reach the wrapper's strata
  for (const k of Object.keys(env)) if (k.startsWith("STRATA_") || k.startsWith("ETCD")) delete env[k];
  const timeoutMs = o.timeoutMs ?? 10 * 60_000;
  const args = [
    "-test.v", `-test.run=^${name}$`, `-test.timeout=${Math.round(timeoutMs / 1000)}s`,
    `-bin-dir=${binDir(target)}`, `-cert-dir=${join(ETCD_SRC, "integration/fixtures")}`,
  ];
  log.write(`### ${target}: ${binary} ${args.join(" ")}\n`);
  return new Promise((done, fail) => {
    const child = spawn(binary, args, { cwd: workDir(), env, stdio: ["ignore", "pipe", "pipe"] });
    const killer = setTimeout(() => child.kill("SIGKILL"), timeoutMs + 60_000);
    const reader = new OutputReader((r) => {
      results.set(r.name, r);
      o.onResult?.(r);
    });
    let partial = "";
    const onLine = (line: string) => {
      log.write(`${line}\n`);
      reader.line(line);
    };
    const onData = (d: Buffer) => {
      const lines = (partial + d.toString("utf8")).split("\n");
      partial = lines.pop()!;
      lines.forEach(onLine);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("error", fail);
    child.once("close", () => {
      clearTimeout(killer);
      if (partial) onLine(partial);
      killLeftovers(target);
      done(reader.current);
    });
  });
}

/**
 * A suite that died mid-test leaves its etcd (or strata) running on the suite's ports:
 * end those processes, found by the bin dir or wrapper path that only this checkout uses.
 */
function killLeftovers(target: Target): void {
  const marks = [join(CACHE, "bin", target), WRAPPER];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (marks.some((m) => cmdline.includes(m))) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {}
    }
  }
}

/**
 * Takes the machine-wide lock on the suite's fixed ports (another checkout's run uses the
 * same ports), waiting while a live process holds it, for LOCK_WAIT_MS at most.
 */
async function lock(): Promise<() => void> {
  const file = join(tmpdir(), "strata-etcd-e2e-ports.lock");
  const until = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      // "wx": created only if absent, so two runs never both take it
      writeFileSync(file, String(process.pid), { flag: "wx" });
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = Number(readFileSync(file, "utf8"));
    if (!holder || !alive(holder)) {
      rmSync(file, { force: true });
      continue;
    }
    if (Date.now() > until) throw new Error(`another run of etcd's e2e suite (pid ${holder}) has held ports 20000-20020 for ${LOCK_WAIT_MS / 60_000} minutes`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
/** how long a run waits for another to end: a whole run of the subset takes about 5 minutes */
const LOCK_WAIT_MS = 20 * 60_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
