// `strata serve` (and `strata` with flags alone): runs the etcd v3 API on the configured
// backends. Composes the layers: opens the keyspace (keyspace/open.ts wires it), starts the
// gRPC and HTTP servers on it, and shuts them down in order.
import type { Server as TlsServer } from "node:tls";
import { AuthStore } from "../api/auth-store.ts";
import { tokenProvider } from "../api/auth-tokens.ts";
import { Connections } from "../api/connections.ts";
import { createGrpcServer } from "../api/server.ts";
import { superviseTls, tlsServerOptions } from "../api/tls.ts";
import { commit, version } from "./build-info.ts";
import { observabilityApp } from "../api/http/app.ts";
import { serveHttp } from "../api/http/serve.ts";
import { followRoutingPolicy, openKeyspace } from "../keyspace/open.ts";
import { type Config, ConfigError, helpText } from "../config/config.ts";
import { migrationTopology } from "../config/topology-documents.ts";
import { keyspaceOptions, loadCheckedConfig, remoteTopology } from "./config.ts";
import { log, setLogLevel } from "../util/log.ts";
import { Observer } from "../observe/observer.ts";
import { onShutdown, runClosers } from "./shutdown.ts";
import { collectUnderMemoryPressure, releaseMemoryWhenQuiet } from "../util/memory-pressure.ts";
import { servingBegins, startingUp } from "../util/start-up.ts";
import { listenAlso } from "../api/listen-also.ts";
import { prepareDataDir, refuseEtcdData } from "./data-dir.ts";

/** Runs the command with the serve flags (after `serve`, or the whole command line). */
export async function serveCommand(serveArgs: string[]): Promise<void> {
  if (serveArgs.includes("--help") || serveArgs.includes("-h")) {
    console.log(helpText());
    return;
  }
  let config: Config;
  try {
    config = loadCheckedConfig(serveArgs, process.env, true);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`strata: configuration error: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  try {
    await serve(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`strata: configuration error: ${err.message}`);
      process.exit(2);
    }
    console.error(`strata: cannot start: ${(err as Error).message}`);
    process.exit(1);
  }
}

/** past this, a shutdown that still waits on something exits anyway */
const SHUTDOWN_DEADLINE_MS = 10_000;
/** how long calls under way may take to finish once shutdown began */
const SESSIONS_GRACE_MS = 5_000;

async function serve(config: Config): Promise<void> {
  setLogLevel(config["log-level"]);
  if (config.ignoredEtcdFlags.length > 0) {
    log("warn", "ignoring etcd flags that mean nothing to strata: it is one member with no raft, peers or WAL of its own (docs/etcd-flags.md)", {
      flags: config.ignoredEtcdFlags.join(" "),
    });
  }
  if (config["data-dir"]) {
    prepareDataDir(config["data-dir"]);
    refuseEtcdData(config["data-dir"]);
  }
  const observer = new Observer(config["slow-request-threshold"], config["slow-request-interval"]);
  collectUnderMemoryPressure();
  releaseMemoryWhenQuiet();
  startingUp();
  // certificates and token keys are checked before any database is opened
  const tls = config.tls ? tlsServerOptions(config.tls) : undefined;
  const tokens = tokenProvider(config["auth-token"], config["auth-token-ttl"]);
  // a topology served by a URL or kept in a Secret is read before the databases open
  const remote = remoteTopology(config);
  if (remote) config.topology = await remote;
  const options = keyspaceOptions(config);
  const { keyspace, identity, topologyConfigs } = await openKeyspace(options, log, observer.instrument);
  keyspace.start();
  observer.follow(keyspace);
  // etcd's users and roles live in the default backend, shared by every process on it
  const auth = new AuthStore(keyspace.authStorage, keyspace.defaultBackend, {
    tokens,
    bcryptCost: config["bcrypt-cost"],
    clientCertAuth: config.tls?.clientCertAuth ?? false,
  }, log);
  await auth.start();
  onShutdown("auth store", () => auth.stop());
  const stopWatchingConfig = followRoutingPolicy(options, keyspace, log, topologyConfigs);

  const [listen, ...moreListens] = config.listenUrls as [URL, ...URL[]];
  const clientUrls = config["advertise-client-urls"]
    ? config["advertise-client-urls"].split(",").map((s) => s.trim()).filter(Boolean)
    : config.listenUrls.map((u) => u.origin);
  const connections = new Connections();
  const server = createGrpcServer({
    keyspace,
    rerouting: keyspace,
    readTopology: migrationTopology,
    identity,
    member: { name: config.name, clientUrls },
    limits: { maxTxnOps: config["max-txn-ops"], maxRequestBytes: config["max-request-bytes"] },
    log,
    closing: connections.closing,
    tls,
    observer,
    http2: {
      responseBudgetBytes: config["response-budget-bytes"],
      stalledStreamTimeoutMs: config["stalled-stream-timeout"],
      idleConnectionTimeoutMs: config["idle-connection-timeout"],
      maxConcurrentStreams: config["max-concurrent-streams"],
      maxConnections: config["max-connections"],
    },
    auth,
  });
  connections.track(server);
  if (config.tls) onShutdown("certificate reloading", superviseTls(server.listener as TlsServer, config.tls, log));
  servingBegins();
  await server.listen(Number(listen.port || 2379), hostOf(listen));
  // etcd listens on every URL of --listen-client-urls: the others hand their connections to this one
  const alsoListening = await Promise.all(moreListens.map((u) => listenAlso(server.listener, Number(u.port || 2379), hostOf(u), u.origin)));
  log("info", "serving etcd v3 API", {
    version,
    commit: commit(),
    listen: config.listenUrls.map((u) => u.origin).join(","),
    ...(config.tls && { clientCertAuth: config.tls.clientCertAuth }),
    ...(config.tls?.selfSigned && { autoTls: "a self-signed certificate made at start" }),
    backends: keyspace.probes.map((p) => `${p.name}=${p.url}`).join(", "),
    revision: String(keyspace.database.router.revision),
  });
  onShutdown("observer", () => observer.stop());
  if (config["metrics-listen"]) {
    const app = observabilityApp(observer, { name: config.name, version, commit: commit() });
    const metricsServer = await serveHttp(app.fetch, new URL(config["metrics-listen"]), "metrics-listen");
    onShutdown("metrics listener", () => metricsServer.close());
    log("info", "serving metrics, health and the status page", { listen: metricsServer.url });
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log("info", "shutting down", { signal, connections: connections.open });
    setTimeout(() => {
      log("error", `shutdown did not finish within ${SHUTDOWN_DEADLINE_MS / 1000}s; exiting anyway`);
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    stopWatchingConfig();
    for (const l of alsoListening) l.close();
    keyspace.stop();
    // no new connections; open ones get a GOAWAY, calls under way finish, watches and
    // lease keep-alives end with Unavailable so their clients reconnect elsewhere
    const idle = await Promise.race([connections.close().then(() => true), sleep(SESSIONS_GRACE_MS).then(() => false)]);
    if (!idle) {
      log("warn", "cutting connections whose calls did not finish", { connections: connections.open });
      connections.destroy();
    }
    // writes already queued commit before the databases close
    await keyspace.drain();
    await runClosers(log);
    await keyspace.close();
    log("info", "stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

/** the address to listen on: as etcd's (Go's) listener, localhost is 127.0.0.1 */
function hostOf(u: URL): string {
  const host = u.hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" ? "127.0.0.1" : host;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
