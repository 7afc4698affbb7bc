// `npm run build`: strata as one executable for this machine's Linux target in dist/, with
// the Bun runtime inside; `npm run build -- --all` makes all four targets (Bun fetches the
// runtimes of other targets from the npm registry).
// The git commit is written into the executable, so `strata --version` names it.
import { spawnSync } from "node:child_process";
import { mkdirSync, statSync } from "node:fs";
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

/** Compiles src/main.ts for one target into `outfile`; throws with Bun's output on failure. */
export function compile(target: Target, outfile: string, commit = gitCommit()): void {
  const r = spawnSync(process.execPath, [
    "build", "--compile",
    `--target=${TARGETS[target]}`,
    // the code is a twentieth of the file (the Bun runtime is the rest; docs/binary.md):
    // minified, and split so that each command, backend driver and worker thread loads
    // only the chunks it imports (a lazy `await import()` is a chunk of its own); compiled
    // to bytecode, which halves the CPU time to the first answer for 7 MiB more file
    // (bytecode for ES modules, which top-level await needs, wants --format=esm)
    "--minify", "--splitting", "--bytecode", "--format=esm",
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

if (import.meta.main) {
  const dist = join(ROOT, "dist");
  mkdirSync(dist, { recursive: true });
  const commit = gitCommit();
  const targets = process.argv.includes("--all") ? (Object.keys(TARGETS) as Target[]) : [hostTarget()];
  for (const target of targets) {
    const out = join(dist, `strata-${target}`);
    compile(target, out, commit);
    const mib = (statSync(out).size / 1024 / 1024).toFixed(1);
    console.log(`dist/strata-${target}  ${mib} MiB`);
  }
  console.log(`commit ${commit}`);
}
