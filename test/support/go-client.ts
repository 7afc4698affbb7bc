// Builds and runs test/go's strata-gotest: scenarios driven by etcd's own Go client
// (clientv3 on grpc-go, what kube-apiserver links), compiled with Debian's golang-go
// against golang-etcd-server-dev's sources in GOPATH mode — no module proxy, no network.
// The binary is cached in the temp dir under a hash of what it is built from, so the
// suite's runs on each backend build it once per machine.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";

const GO_DIR = resolve(import.meta.dir, "../go");
// where Debian's golang-*-dev packages install Go sources (etcd 3.4, grpc-go and the rest)
export const DEBIAN_GOPATH = "/usr/share/gocode";

/** Go in GOPATH mode over Debian's sources (test/go first), offline, with a shared build cache */
export function goEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GO111MODULE: "off",
    GOPATH: `${GO_DIR}:${DEBIAN_GOPATH}`,
    GOPROXY: "off",
    GOFLAGS: "",
    // pure Go: no C toolchain needed, and the binary runs anywhere
    CGO_ENABLED: "0",
    // go refuses to build without a cache dir, and CI may have no HOME
    GOCACHE: process.env.GOCACHE ?? join(tmpdir(), "strata-go-build-cache"),
  };
}

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)],
  );
}

interface Exited {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function run(exe: string, args: string[], timeoutMs: number, env = process.env): Promise<Exited> {
  return new Promise((done, fail) => {
    const child = spawn(exe, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout!.on("data", (d) => (stdout += d));
    // clientv3 logs to stderr; its tail is enough to tell why a run failed
    child.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-20_000)));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("error", fail);
    child.once("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr, timedOut });
    });
  });
}

let built: Promise<string> | undefined;

/** the path of the built strata-gotest, building it on first use */
export function goProgram(): Promise<string> {
  built ??= build();
  return built;
}

async function build(): Promise<string> {
  const hash = createHash("sha256");
  const version = await run("go", ["version"], 30_000);
  hash.update(version.stdout);
  // the client library versions: an upgraded Debian package means a rebuild
  for (const f of ["google.golang.org/grpc/version.go", "go.etcd.io/etcd/version/version.go"]) {
    const path = join(DEBIAN_GOPATH, "src", f);
    if (existsSync(path)) hash.update(readFileSync(path));
  }
  for (const f of files(join(GO_DIR, "src")).sort()) {
    hash.update(relative(GO_DIR, f)).update("\0").update(readFileSync(f)).update("\0");
  }
  const dir = join(tmpdir(), `strata-gotest-${hash.digest("hex").slice(0, 16)}`);
  const bin = join(dir, "strata-gotest");
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const partial = `${bin}.${process.pid}.partial`;
  const r = await run("go", ["build", "-o", partial, "strata-gotest"], 300_000, goEnv());
  if (r.code !== 0) {
    rmSync(partial, { force: true });
    throw new Error(`go build strata-gotest failed (needs golang-go and golang-etcd-server-dev):\n${r.stdout}${r.stderr}`);
  }
  // renamed into place whole, so a concurrent run never starts a half-written binary
  renameSync(partial, bin);
  return bin;
}

/** what every scenario reports about the watch it checked (see test/go's watchlog.go) */
export interface WatchReport {
  scenario: string;
  expectedEvents: number;
  receivedEvents: number;
  missingEvents: number;
  /** the first revision missing, relative to the revision the watch started after */
  firstMissingRevision?: number;
  unexpectedEvents: number;
  wrongEvents: number;
  missingPrevKv: number;
  wrongPrevKv: number;
  duplicates: number;
  outOfOrder: number;
  progressResponses: number;
  progressBelowEvent: number;
  eventBelowProgress: number;
  watchEnded?: string;
  waitAfterWritesMs: number;
  writeSeconds: number;
  maxRequestMs: number;
  maxRequestOp: string;
  errors: string[];
  errorCount: number;
}

export interface ApiserverReport extends WatchReport {
  lists: number;
  listErrors: string[];
  updateRetries: number;
  progressRequests: number;
}

export interface StalledReport extends WatchReport {
  valueBytes: number;
}

/** runs one scenario against an etcd endpoint and returns its report */
export async function runGoScenario<T extends WatchReport>(args: string[], timeoutMs = 90_000): Promise<T> {
  const r = await run(await goProgram(), args, timeoutMs);
  const line = r.stdout.trim().split("\n").at(-1) ?? "";
  if (r.code !== 0 || !line.startsWith("{")) {
    const why = r.timedOut ? `killed after ${timeoutMs} ms` : `exit code ${r.code}`;
    throw new Error(`strata-gotest ${args.join(" ")}: ${why}\nstdout: ${r.stdout}\nstderr: ${r.stderr.slice(-4000)}`);
  }
  return JSON.parse(line) as T;
}
