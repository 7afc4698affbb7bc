// Runs the strata command line as a user would, without blocking this process (servers
// and writers in the test keep going meanwhile), and writes the config files it reads.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const MAIN = resolve(import.meta.dir, "../../src/main.ts");

/** `strata ARGS...` with no config from the environment; its exit status and stderr */
export function strataCli(...args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((done) => {
    const p = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, STRATA_CONFIG: "" } });
    let stderr = "";
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (status) => done({ status, stderr }));
  });
}

/** writes lines as dir/name and returns its path */
export function writeConfig(dir: string, name: string, lines: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, lines.join("\n") + "\n");
  return path;
}
