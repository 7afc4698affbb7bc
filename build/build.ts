// `npm run build`: strata as one executable for this machine's Linux target in dist/, with
// the Bun runtime inside; `npm run build -- --all` makes all four targets (Bun fetches the
// runtimes of other targets from the npm registry).
// The git commit is written into the executable, so `strata --version` names it.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { connect as connectH2 } from "node:http2";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");

/** dist name → Bun's compile target */
export const TARGETS = {
  "linux-x64": "bun-linux-x64",
  "linux-arm64": "bun-linux-arm64",
  "linux-x64-musl": "bun-linux-x64-musl",
  "linux-arm64-musl": "bun-linux-arm64-musl",
} as const;

export type Target = keyof typeof TARGETS;

/** the glibc target of the machine this runs on */
export function hostTarget(): Target {
  return process.arch === "arm64" ? "linux-arm64" : "linux-x64";
}

export function gitCommit(): string {
  const r = spawnSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: ROOT, encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "unknown";
}

/**
 * Compiles src/main.ts for one target into `outfile`; throws with Bun's output on failure.
 * With `order` (a profile recordBytecodeOrder wrote), the bytecode a start runs is laid
 * out together at the front of the file, so a server pages in less of it (docs/binary.md).
 */
function compileWith(target: Target, outfile: string, commit: string, order?: string): void {
  const r = spawnSync(process.execPath, [
    "build", "--compile",
    `--target=${TARGETS[target]}`,
    // the code is a twentieth of the file (the Bun runtime is the rest; docs/binary.md):
    // minified, and split so that each command, backend driver and worker thread loads
    // only the chunks it imports (a lazy `await import()` is a chunk of its own); compiled
    // to bytecode, which halves the CPU time to the first answer for 7 MiB more file
    // (bytecode for ES modules, which top-level await needs, wants --format=esm)
    "--minify", "--splitting", "--bytecode", "--format=esm",
    ...(order ? [`--bytecode-order=${order}`] : []),
    `--define=STRATA_COMMIT=${JSON.stringify(commit)}`,
    join(ROOT, "src/main.ts"),
    // a worker thread's code is an entry point of its own (src/backends/sqlite/wal-checkpointer.ts)
    join(ROOT, "src/backends/sqlite/checkpoint-worker.ts"),
    join(ROOT, "src/backends/sqlite/integrity-worker.ts"),
    join(ROOT, "src/backends/sql/read-worker.ts"),
    join(ROOT, "src/api/password-worker.ts"),
    "--outfile", outfile,
  ], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`bun build --compile for ${target} failed:\n${r.stdout}${r.stderr}`);
}

/** how long a recording run may take to answer /health */
const RECORD_DEADLINE_MS = 60_000;
/** how long a recording run idles after its calls, so what an idle server's timers run is laid out too */
const RECORD_IDLE_MS = 3_000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

/**
 * One unary gRPC call with a hand-encoded request: `fields` are (field number, bytes)
 * pairs of a message whose fields are all bytes (etcd's PutRequest and RangeRequest keys
 * and values), each under 128 bytes, so the build needs no protobuf code of its own.
 */
function grpcCall(port: number, path: string, fields: Array<[number, string]>): Promise<void> {
  const body = Buffer.concat(fields.map(([n, v]) => Buffer.concat([Buffer.from([(n << 3) | 2, v.length]), Buffer.from(v)])));
  const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]);
  return new Promise((resolve, reject) => {
    const session = connectH2(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
    req.on("trailers", (t) => (t["grpc-status"] === "0" ? resolve() : reject(new Error(`${path}: grpc-status ${t["grpc-status"]} ${t["grpc-message"]}`))));
    req.on("error", reject);
    req.on("close", () => session.close());
    req.resume();
    req.end(frame);
  });
}

/**
 * Runs `binary` as a user's first start does (serve SQLite on an empty data directory with
 * a metrics listener, answer /health, a put and two gets over gRPC, idle a while, stop),
 * with Bun recording which functions run into `order`.
 */
async function recordBytecodeOrder(binary: string, order: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "strata-bytecode-order-"));
  const port = await freePort();
  const metricsPort = await freePort();
  const listen = ["--listen", `http://127.0.0.1:${port}`, "--metrics-listen", `http://127.0.0.1:${metricsPort}`];
  const child = spawn(binary, [...listen, "--data-dir", join(dir, "data")], {
    stdio: "ignore",
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("STRATA_"))), BUN_BYTECODE_ORDER_OUT: order },
  });
  const exited = new Promise((r) => child.once("exit", r));
  try {
    const deadline = performance.now() + RECORD_DEADLINE_MS;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the executable exited (${child.exitCode}) before it answered /health`);
      if (performance.now() > deadline) throw new Error(`the executable did not answer /health within ${RECORD_DEADLINE_MS / 1000}s`);
      const ok = await fetch(`http://127.0.0.1:${metricsPort}/health`).then((r) => r.ok, () => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await grpcCall(port, "/etcdserverpb.KV/Range", [[1, "bytecode-order"]]);
    await grpcCall(port, "/etcdserverpb.KV/Put", [[1, "bytecode-order"], [2, "recorded"]]);
    await grpcCall(port, "/etcdserverpb.KV/Range", [[1, "bytecode-order"], [2, "bytecode-orderz"]]);
    await new Promise((r) => setTimeout(r, RECORD_IDLE_MS));
  } finally {
    child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
  if (!existsSync(order)) throw new Error("the recording run wrote no bytecode order");
}

/**
 * Compiles each target with a bytecode layout recorded from this machine's executable
 * (one profile holds for every target): a plain build of the host's target is run once.
 */
export async function compileAll(outputs: Array<{ target: Target; outfile: string }>, commit = gitCommit()): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "strata-build-"));
  try {
    const plain = join(work, "strata");
    compileWith(hostTarget(), plain, commit);
    const order = join(work, "strata.order");
    await recordBytecodeOrder(plain, order);
    for (const { target, outfile } of outputs) compileWith(target, outfile, commit, order);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Compiles src/main.ts for one target into `outfile`, as `npm run build` does. */
export function compile(target: Target, outfile: string, commit = gitCommit()): Promise<void> {
  return compileAll([{ target, outfile }], commit);
}

if (import.meta.main) {
  const dist = join(ROOT, "dist");
  mkdirSync(dist, { recursive: true });
  const commit = gitCommit();
  const targets = process.argv.includes("--all") ? (Object.keys(TARGETS) as Target[]) : [hostTarget()];
  const outputs = targets.map((target) => ({ target, outfile: join(dist, `strata-${target}`) }));
  await compileAll(outputs, commit);
  for (const { target, outfile } of outputs) console.log(`dist/strata-${target}  ${(statSync(outfile).size / 1024 / 1024).toFixed(1)} MiB`);
  console.log(`commit ${commit}`);
}
