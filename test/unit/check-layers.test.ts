// The layering check on a copy of src/ with one import added: each import the picture
// forbids fails the check with a line naming it, and the imports it allows pass.
import { describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");

/** Runs the check on src/ plus one file at `path` with `source`; its exit code and output. */
function checkWith(path: string, source: string): { code: number; output: string } {
  const dir = mkdtempSync(join(tmpdir(), "strata-check-layers-"));
  try {
    cpSync(join(ROOT, "src"), join(dir, "src"), { recursive: true });
    mkdirSync(join(dir, "scripts"));
    cpSync(join(ROOT, "scripts/check-layers.ts"), join(dir, "scripts/check-layers.ts"));
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), source);
    const run = Bun.spawnSync([process.execPath, "scripts/check-layers.ts"], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    return { code: run.exitCode, output: `${run.stdout.toString()}${run.stderr.toString()}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("check-layers", () => {
  test("src/ as it is passes, and the summary draws the picture", () => {
    const { code, output } = checkWith("src/util/probe.ts", "export const probe = 1;\n");
    expect(code).toBe(0);
    expect(output).toContain("main > cli > config beside | api > keyspace (contract <- backends) > router (contract) > mvcc (contract <- backends) > backends | shared");
  });

  test.each([
    ["a layer imports config/", "src/router/probe.ts", `import type { Config } from "../config/config.ts";`, "config is beside the stack"],
    ["the router imports the keyspace contract it does not implement", "src/router/probe.ts", `import type { Keyspace } from "../keyspace/contract.ts";`, "imports only the contract of a layer above that it implements"],
    ["a backend imports a part of mvcc", "src/backends/probe.ts", `import type { Store } from "../mvcc/store.ts";`, "imports only the contract of a layer above"],
    ["the api imports the router's parts", "src/api/probe.ts", `import type { Router } from "../router/router.ts";`, "the api talks to the Keyspace interface"],
    ["observe imports the keyspace's parts", "src/observe/probe.ts", `import type { WatchHub } from "../keyspace/watch-hub.ts";`, "observe reads the running keyspace through its contract"],
    ["a shared library imports a layer's parts", "src/snapshot/probe.ts", `import type { Store } from "../mvcc/store.ts";`, "shared libraries import only one another and contracts"],
    ["config imports cli", "src/config/probe.ts", `import type { serveCommand } from "../cli/serve.ts";`, "cli is beside the stack: only main imports it"],
    ["a folder in no layer", "src/elsewhere/probe.ts", "export const probe = 1;", "in no layer"],
  ])("refused: %s", (_, path, source, why) => {
    const { code, output } = checkWith(path, `${source}\nexport {};\n`);
    expect(code).toBe(1);
    expect(output).toContain(path);
    expect(output).toContain(why);
  });

  test.each([
    ["a backend imports the keyspace contract (an upstream etcd implements it)", "src/backends/probe.ts", `import type { Keyspace } from "../keyspace/contract.ts";`],
    ["the api imports the router's contract", "src/api/probe.ts", `import type { Topology } from "../router/contract.ts";`],
    ["config imports a shape a layer owns", "src/config/probe.ts", `import type { RouterOptions } from "../router/open.ts";`],
    ["a shared library imports mvcc's contract", "src/selectors/probe.ts", `import type { KeyValue } from "../mvcc/types.ts";`],
  ])("allowed: %s", (_, path, source) => {
    const { code, output } = checkWith(path, `${source}\nexport {};\n`);
    expect(output).not.toContain("problem(s)");
    expect(code).toBe(0);
  });
});
