#!/usr/bin/env node
// `npx strata …` / `npm exec strata …` after `npm install`: strata's sources run on Bun, which
// comes in as the `bun` npm package, so no global `bun` is needed. Runs src/main.ts on that
// Bun with the arguments given, passes signals on (so SIGTERM stops strata cleanly) and
// exits with its code.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bunPackage = dirname(createRequire(import.meta.url).resolve("bun/package.json"));
const bun = join(bunPackage, "bin", "bun.exe");

const child = spawn(bun, [join(root, "src", "main.ts"), ...process.argv.slice(2)], { stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => child.kill(signal));
}
child.on("error", (e) => {
  console.error(`strata: cannot run Bun (${bun}): ${e.message}; run \`npm install\` first`);
  process.exit(1);
});
child.on("exit", (code, signal) => {
  if (signal) {
    // end the same way, so a caller sees the signal; our own handlers must not catch it
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  }
  else process.exit(code ?? 1);
});
