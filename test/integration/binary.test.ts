// The single executable `npm run build` makes, built here for this machine: alone in an
// empty directory and started with no arguments it serves SQLite there; --version and
// --help say what they should; and the container image's file tree (build/rootfs.sh,
// as build/Containerfile lays it out) runs it as uid 65532 under chroot.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { compile, gitCommit, hostTarget } from "../../build/build.ts";
import pkg from "../../package.json" with { type: "json" };
import { SETTINGS } from "../../src/config/config.ts";
import { freePort } from "../support/strata.ts";

const ROOT = resolve(import.meta.dir, "../..");
const work = mkdtempSync(join(tmpdir(), "strata-binary-"));
const built = join(work, "strata");
/** a /proc mounted for the chroot test, unmounted however that test ends */
let procMount: string | undefined;

beforeAll(() => compile(hostTarget(), built), 120_000);
afterAll(() => {
  if (procMount) spawnSync("umount", [procMount]);
  rmSync(work, { recursive: true, force: true });
});

/** the environment without any STRATA_ setting, so the executable sees only what a test gives it */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("STRATA_") && v !== undefined) env[k] = v;
  return { ...env, ...extra };
}

function etcdctl(endpoint: string, ...args: string[]): string {
  const r = spawnSync("etcdctl", [`--endpoints=${endpoint}`, "--dial-timeout=2s", ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

/** Starts a command; resolves once it says it serves and etcdctl reaches it at endpoint. */
async function started(cmd: string, args: string[], opts: { cwd: string; env: Record<string, string> }, endpoint: string) {
  let stderr = "";
  const child: ChildProcess = spawn(cmd, args, { ...opts, stdio: ["ignore", "ignore", "pipe"] });
  child.stderr!.on("data", (d) => (stderr += d));
  child.on("error", (err) => (stderr += `cannot start: ${err.message}`));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (stderr.includes("serving etcd v3 API")) {
      const probe = spawnSync("etcdctl", [`--endpoints=${endpoint}`, "--dial-timeout=1s", "endpoint", "health"], { encoding: "utf8" });
      if (probe.status === 0) break;
    }
    if (child.exitCode !== null || stderr.includes("cannot start") || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${cmd} did not serve on ${endpoint}: ${stderr}`);
    }
    await Bun.sleep(200);
  }
  return {
    pid: child.pid!,
    stderr: () => stderr,
    /** SIGTERM, then the exit code */
    stop: async () => {
      child.kill("SIGTERM");
      return exited;
    },
  };
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/**
 * What an idle executable on a fresh SQLite database may hold, MiB (docs/binary.md): 71-73
 * measured; 81 with its read thread loading the PostgreSQL and MySQL drivers again, 86
 * before that and before its bytecode was laid out by a recorded start. Resident memory
 * barely depends on how busy the machine is; the bound leaves a few MiB for other kernels.
 */
const IDLE_RSS_BOUND_MIB = 76;
/** how long the executable idles before its memory is read (scripts/bench/front-door.ts's wait) */
const IDLE_MS = 5_000;

describe("the single executable", () => {
  test("--version names the version and the commit it was built from", () => {
    const commit = gitCommit();
    expect(commit).toMatch(/^[0-9a-f]{12}$/);
    const out = spawnSync(built, ["--version"], { encoding: "utf8", cwd: work }).stdout.trim();
    expect(out).toBe(`strata ${pkg.version} (commit ${commit})`);
  });

  test("--help and serve --help document every setting", () => {
    const help = spawnSync(built, ["--help"], { encoding: "utf8" }).stdout;
    const serveHelp = spawnSync(built, ["serve", "--help"], { encoding: "utf8" }).stdout;
    for (const cmd of ["serve", "route explain", "route list", "migrate", "import", "version"]) expect(help).toContain(`  ${cmd}`);
    for (const text of [help, serveHelp]) {
      for (const [name, s] of Object.entries(SETTINGS)) {
        expect(text).toContain(`--${name}  (${s.env})`);
        expect(text).toContain(s.help);
      }
      expect(text).toContain("--config FILE");
    }
  });

  test(`idle after its first answer, it holds at most ${IDLE_RSS_BOUND_MIB} MiB`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "strata-idle-"));
    try {
      const port = await freePort();
      const args = ["--listen", `http://127.0.0.1:${port}`, "--metrics-listen", `http://127.0.0.1:${await freePort()}`, "--data-dir", join(dir, "data")];
      const s = await started(built, args, { cwd: dir, env: cleanEnv() }, `127.0.0.1:${port}`);
      expect(etcdctl(`127.0.0.1:${port}`, "get", "idle")).toBe("");
      await Bun.sleep(IDLE_MS);
      const status = readFileSync(`/proc/${s.pid}/status`, "utf8");
      const mib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)![1]) / 1024;
      const rssMiB = mib("VmRSS");
      console.log(`idle executable: RSS ${rssMiB.toFixed(1)} MiB (bound ${IDLE_RSS_BOUND_MIB}): anonymous ${mib("RssAnon").toFixed(1)}, file ${mib("RssFile").toFixed(1)}, threads ${/Threads:\s+(\d+)/.exec(status)![1]}`);
      expect(rssMiB).toBeLessThanOrEqual(IDLE_RSS_BOUND_MIB);
      expect(await s.stop()).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test("alone in an empty directory with no arguments, it serves SQLite there", async () => {
    const dir = mkdtempSync(join(tmpdir(), "strata-alone-"));
    try {
      copyFileSync(built, join(dir, "strata"));
      expect(readdirSync(dir)).toEqual(["strata"]);
      // the default address when it is free; another strata may hold it on a shared machine
      const port = (await portIsFree(2379)) ? 2379 : await freePort();
      const metricsPort = (await portIsFree(2381)) ? 2381 : await freePort();
      const env = cleanEnv({
        ...(port === 2379 ? {} : { STRATA_LISTEN: `http://127.0.0.1:${port}` }),
        ...(metricsPort === 2381 ? {} : { STRATA_METRICS_LISTEN: `http://127.0.0.1:${metricsPort}` }),
      });
      const endpoint = `127.0.0.1:${port}`;
      const s = await started(join(dir, "strata"), [], { cwd: dir, env }, endpoint);
      expect(etcdctl(endpoint, "put", "alone", "yes")).toBe("OK");
      expect(etcdctl(endpoint, "get", "alone", "--print-value-only")).toBe("yes");
      // a range of keys is read on a read thread, whose code is inside the executable too
      expect(etcdctl(endpoint, "get", "al", "--prefix", "--print-value-only")).toBe("yes");
      expect(s.stderr()).toContain(`"listen":"http://${endpoint}"`);
      await expectObservability(`http://127.0.0.1:${metricsPort}`);
      expect(existsSync(join(dir, "strata.db"))).toBe(true);
      expect(await s.stop()).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test("the container image's file tree runs it as uid 65532 under chroot", async () => {
    if (process.getuid?.() !== 0) throw new Error("this test needs root (chroot, mount); the test command runs as root");
    const root = join(work, "image");
    const laid = spawnSync("sh", [join(ROOT, "build/rootfs.sh"), built, root], { encoding: "utf8" });
    expect(laid.stderr).toBe("");
    expect(laid.status).toBe(0);

    // the tree holds the executable, glibc's libraries, the data directory and /tmp: nothing else
    const files = listFiles(root);
    expect(files).toContain("usr/local/bin/strata");
    const libraries = files.filter((f) => f !== "usr/local/bin/strata");
    expect(libraries.length).toBeGreaterThan(0);
    for (const lib of libraries) expect(lib).toMatch(/^(usr\/)?lib(64)?\/([a-z0-9_-]+\/)?(ld-linux[^/]*|lib(c|m|dl|pthread)\.so\.\d+)$/);
    expect(statSync(join(root, "var/lib/strata")).uid).toBe(65532);
    expect(statSync(join(root, "tmp")).mode & 0o7777).toBe(0o1777);

    // what the container runtime adds: /proc, and the image's environment
    mkdirSync(join(root, "proc"));
    const mounted = spawnSync("mount", ["-t", "proc", "proc", join(root, "proc")], { encoding: "utf8" });
    expect(mounted.stderr).toBe("");
    procMount = join(root, "proc");
    const image = containerEnv();
    expect(image.STRATA_LISTEN).toBe("http://0.0.0.0:2379");
    const port = await freePort();
    const endpoint = `127.0.0.1:${port}`;
    // loopback instead of 0.0.0.0:2379, which may be taken on this machine
    expect(image.STRATA_METRICS_LISTEN).toBe("http://0.0.0.0:2381");
    const metrics = `http://127.0.0.1:${await freePort()}`;
    const env = { ...image, STRATA_LISTEN: `http://${endpoint}`, STRATA_METRICS_LISTEN: metrics, HOME: "/", PATH: process.env.PATH ?? "/usr/sbin:/usr/bin" };
    const s = await started("chroot", ["--userspec=65532:65532", root, "/usr/local/bin/strata"], { cwd: root, env }, endpoint);
    expect(etcdctl(endpoint, "put", "in-image", "yes")).toBe("OK");
    expect(etcdctl(endpoint, "get", "in-image", "--print-value-only")).toBe("yes");
    // the status page needs nothing from outside the image
    await expectObservability(metrics);
    expect(statSync(join(root, "var/lib/strata/strata.db")).uid).toBe(65532);
    expect(await s.stop()).toBe(0);
  }, 120_000);
});

/** The executable serves its probes, metrics and status page (hono and prom-client are inside it). */
async function expectObservability(base: string): Promise<void> {
  expect(await (await fetch(`${base}/readyz`)).text()).toBe("ok\n");
  expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/^grpc_server_handled_total\{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"\} 1$/m);
  expect(await (await fetch(`${base}/`)).text()).toContain("<title>strata status</title>");
}

function listFiles(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? listFiles(p, base) : [relative(base, p)];
  });
}

/** the ENV settings of build/Containerfile's final image */
function containerEnv(): Record<string, string> {
  const text = readFileSync(join(ROOT, "build/Containerfile"), "utf8").replace(/\\\n/g, " ");
  const env: Record<string, string> = {};
  for (const line of text.split("\n").filter((l) => l.startsWith("ENV "))) {
    for (const [, k, v] of line.slice(4).matchAll(/([A-Z_]+)=(\S+)/g)) env[k!] = v!;
  }
  return env;
}
