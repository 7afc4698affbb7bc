// Starts strata as a child process on a free loopback port, on a fresh database of the
// backend under test: STRATA_TEST_BACKEND=sqlite (default), postgres, mariadb, nats,
// etcd (strata in front of an upstream etcd), or a distributed SQL engine's profile on a
// simulation of it (cockroach-sim, yugabyte-sim, tidb-sim: see SIMULATIONS). The database servers are real ones, started
// once per test process by scripts/databases.ts; each upstream etcd is a real etcd of its own.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Etcd3 } from "etcd3";
import { type DatabaseServer, freePort, startMariadb, startNats, startPostgres } from "../../scripts/databases.ts";
import { type EtcdProcess, startEtcd } from "./etcd.ts";

export { freePort };

const ROOT = resolve(import.meta.dir, "../..");
export const BACKEND = process.env.STRATA_TEST_BACKEND ?? "sqlite";

const servers = new Map<string, Promise<DatabaseServer>>();
const etcds: EtcdProcess[] = [];
let databases = 0;

/** a fresh, empty database of the backend under test; etcdArgs go to an upstream etcd */
export function freshBackendUrl(dir: string, etcdArgs: string[] = []): Promise<string> {
  return freshDatabase(BACKEND, dir, etcdArgs);
}

/**
 * A fresh, empty database of the given kind (its server is started on first use), or
 * for "etcd" a real etcd of its own (stopped when the test process ends).
 */
export async function freshDatabase(kind: string, dir: string, etcdArgs: string[] = []): Promise<string> {
  if (kind === "sqlite") return `sqlite://${join(dir, `strata-${++databases}.db`)}`;
  if (kind === "etcd") {
    const etcd = await startEtcd(etcdArgs);
    etcds.push(etcd);
    return `etcd://${etcd.endpoint}`;
  }
  const simulated = SIMULATIONS[kind];
  if (simulated) return simulated.scheme + (await freshDatabase(simulated.server, dir)).replace(/^[a-z]+:/, ":");
  const start = SERVERS[kind];
  if (!start) throw new Error(`database kind ${kind}: expected sqlite, postgres, mariadb, nats, etcd or ${Object.keys(SIMULATIONS).join(", ")}`);
  if (!servers.has(kind)) {
    servers.set(kind, start());
  }
  return (await servers.get(kind)!).createDatabase(`strata_t${process.pid}_${++databases}`);
}

const SERVERS: Record<string, () => Promise<DatabaseServer>> = {
  postgres: () => startPostgres(),
  mariadb: () => startMariadb(),
  nats: () => startNats(),
  // every transaction SERIALIZABLE, so conflicts come back as 40001 (as CockroachDB's do)
  "postgres-serializable": () => startPostgres({ settings: { default_transaction_isolation: "serializable" } }),
};

/**
 * The distributed SQL engines cannot be installed here: each profile runs on the server
 * whose wire it speaks, the PostgreSQL one with every transaction SERIALIZABLE. The
 * profile itself never sends what the engine lacks (test/integration/engine-profiles.test.ts
 * reads the servers' statement logs).
 */
export const SIMULATIONS: Record<string, { server: string; scheme: string }> = {
  "cockroach-sim": { server: "postgres-serializable", scheme: "cockroachdb" },
  "yugabyte-sim": { server: "postgres-serializable", scheme: "yugabytedb" },
  "tidb-sim": { server: "mariadb", scheme: "tidb" },
};

/** Stops the database servers this test process started (bunfig.toml's preload calls it). */
export async function stopDatabaseServers(): Promise<void> {
  for (const s of servers.values()) await (await s).destroy();
  servers.clear();
  await Promise.all(etcds.splice(0).map((e) => e.stop()));
}

/** the database server of the backend under test (not for sqlite) */
export function backendServer(): Promise<DatabaseServer> {
  const s = servers.get(BACKEND);
  if (!s) throw new Error(`no ${BACKEND} server started yet`);
  return s;
}

export interface StrataProcess {
  endpoint: string;
  /** base URL of /metrics, /healthz, /readyz and the status page ("" when turned off) */
  metrics: string;
  dir: string;
  backendUrl: string;
  stderr(): string;
  /** the process ID (for signals such as SIGSTOP) */
  pid(): number;
  kill(): void;
  /** SIGTERM, then the exit code once the process ended (its directory stays, for restart) */
  terminate(): Promise<number | null>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** how to run src/main.ts: on Bun (the test runner itself), or on Deno */
export type Runtime = "bun" | "deno";

/** PEM contents a client presents to a strata serving TLS: the CA to trust, its own certificate */
export interface ClientTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

function command(runtime: Runtime, root: string): string[] {
  if (runtime === "bun") return [process.execPath, join(root, "src/main.ts")];
  return [join(ROOT, "node_modules/.bin/deno"), "run", "--allow-all", join(root, "src/main.ts")];
}

/**
 * Starts strata; `backendUrl` shares an existing database (several processes on one
 * database). With --config among the arguments the file names the backends.
 */
export async function startStrata(
  extraArgs: string[] = [],
  backendUrl?: string,
  runtime: Runtime = "bun",
  tls?: ClientTls,
  /** the checkout whose strata runs (a benchmark's A/B runs an older one beside this) */
  root = ROOT,
): Promise<StrataProcess> {
  const dir = mkdtempSync(join(tmpdir(), "strata-test-"));
  const routed = extraArgs.includes("--config");
  const url = routed ? "" : backendUrl ?? (await freshBackendUrl(dir, upstreamArgs(extraArgs)));
  const port = await freePort();
  const endpoint = `127.0.0.1:${port}`;
  // each process gets its own metrics port, unless the test chose one (or none)
  const chosen = extraArgs.indexOf("--metrics-listen");
  const metrics = chosen >= 0 ? extraArgs[chosen + 1]! : `http://127.0.0.1:${await freePort()}`;
  const metricsArgs = chosen >= 0 ? [] : ["--metrics-listen", metrics];
  let child: ChildProcess;
  let err = "";
  const launch = async () => {
    const [exe, ...args] = command(runtime, root);
    const backend = routed ? [] : ["--backend", url];
    child = spawn(exe!, [...args, "serve", "--listen", `${tls ? "https" : "http"}://${endpoint}`, ...backend, ...metricsArgs, ...extraArgs], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    child.stderr!.on("data", (d) => (err = (err + d).slice(-20_000)));
    try {
      await waitReady(endpoint, () => err, () => child.exitCode ?? child.signalCode, tls);
    } catch (e) {
      // a strata that never became ready is not left running beside the next test
      child.kill("SIGKILL");
      throw e;
    }
  };
  await launch();
  const exited = () => new Promise<void>((r) => (child.exitCode !== null || child.signalCode ? r() : child.once("exit", () => r())));
  return {
    endpoint,
    metrics,
    dir,
    backendUrl: url,
    stderr: () => err,
    pid: () => child.pid!,
    kill: () => child.kill("SIGKILL"),
    terminate: async () => {
      child.kill("SIGTERM");
      await exited();
      return child.exitCode;
    },
    restart: async () => {
      await exited();
      await launch();
    },
    stop: async () => {
      child.kill("SIGTERM");
      // a clean shutdown takes well under this; past it, the process is stuck
      const stuck = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited();
      clearTimeout(stuck);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * What an upstream etcd needs to behave as strata was asked to: watchers on it get
 * progress notifications from etcd itself, at etcd's interval; its quota is the one asked for.
 */
function upstreamArgs(strataArgs: string[]): string[] {
  const out: string[] = [];
  const i = strataArgs.indexOf("--watch-progress-notify-interval");
  if (i >= 0) out.push("--experimental-watch-progress-notify-interval", strataArgs[i + 1]!);
  // an upstream etcd keeps its own storage quota
  const q = strataArgs.indexOf("--quota-backend-bytes");
  if (q >= 0) out.push("--quota-backend-bytes", strataArgs[q + 1]!);
  return out;
}

/** An etcd3 client of a strata, over TLS when `tls` is given. */
export function etcdClient(endpoint: string, tls?: ClientTls, options: Record<string, unknown> = {}): Etcd3 {
  if (!tls) return new Etcd3({ hosts: endpoint, ...options } as never);
  return new Etcd3({
    hosts: `https://${endpoint}`,
    credentials: { rootCertificate: tls.ca, certChain: tls.cert, privateKey: tls.key },
    // grpc-js names the host as the TLS server name, which Bun refuses for an IP address;
    // the test certificates are also valid for localhost
    grpcOptions: { "grpc.ssl_target_name_override": "localhost" },
    ...options,
  } as never);
}

async function waitReady(endpoint: string, stderr: () => string, exit: () => number | string | null, tls?: ClientTls): Promise<void> {
  // Deno compiles the sources on its first start
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    // a process that exited will never answer: say so now, not at the deadline
    const code = exit();
    if (code !== null) throw new Error(`strata exited (${code}) before it became ready on ${endpoint}: ${stderr()}`);
    const c = etcdClient(endpoint, tls, { dialTimeout: 500 });
    try {
      await c.get("ready-probe").exec();
      return;
    } catch (err) {
      // with auth on, an anonymous read is refused: the server answers, so it is ready
      if (/user name is empty|permission denied/.test((err as Error).message)) return;
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      c.close();
    }
  }
  throw new Error(`strata did not become ready on ${endpoint}: ${stderr()}`);
}
