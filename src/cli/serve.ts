// `strata serve` (and `strata` with flags alone): runs the etcd v3 API on the configured
// backends. Composes the layers: opens the router, wires the keyspace services (watch hub,
// leases, compaction) to it, starts the gRPC and HTTP servers, and shuts them down in order.
import type { Server as TlsServer } from "node:tls";
import { Connections } from "../api/connections.ts";
import { createGrpcServer } from "../api/server.ts";
import { superviseTls, tlsServerOptions } from "../api/tls.ts";
import { commit, version } from "./build-info.ts";
import { observabilityApp } from "../api/http/app.ts";
import { serveHttp } from "../api/http/serve.ts";
import { AutoCompactor } from "../keyspace/compactor.ts";
import { DatabaseLeases, type LeaseKeeper } from "../keyspace/leases.ts";
import { UpstreamLeases } from "../keyspace/upstream-leases.ts";
import type { Router } from "../router/router.ts";
import { openRouter, watchTopology } from "../router/open.ts";
import { WatchHub } from "../keyspace/watch-hub.ts";
import { type Config, ConfigError, helpText } from "../config/config.ts";
import { loadCheckedConfig } from "./config.ts";
import { log, setLogLevel } from "../observe/log.ts";
import { Observer } from "../observe/observer.ts";
import { onShutdown, runClosers } from "./shutdown.ts";
import { collectUnderMemoryPressure } from "../util/memory-pressure.ts";

/** Runs the command with the serve flags (after `serve`, or the whole command line). */
export async function serveCommand(serveArgs: string[]): Promise<void> {
  if (serveArgs.includes("--help") || serveArgs.includes("-h")) {
    console.log(helpText());
    return;
  }
  let config: Config;
  try {
    config = loadCheckedConfig(serveArgs, process.env);
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
  const observer = new Observer(config["slow-request-threshold"]);
  collectUnderMemoryPressure();
  // certificates are checked before any database is opened
  const tls = config.tls ? tlsServerOptions(config.tls) : undefined;
  const { router, identity } = await openRouter(config, log, observer.instrument);
  const hub = new WatchHub(router, () => ({ revision: router.revision, latest: router.latestRevision, compactRevision: router.compactRevision }));
  router.onCommit((c) => hub.publish(c.revision, c.events));
  // commits by other strata processes on the same databases reach this one's watchers
  const stopExternal = router.followExternalCommits();
  const leases = leaseKeeper(router);
  leases.start();
  observer.follow(router, hub, leases);
  // an upstream etcd compacts its own history (its --auto-compaction-* settings)
  const compactor = config.autoCompaction && router.parts.length > 0
    ? new AutoCompactor(router.databaseHistory, config.autoCompaction)
    : undefined;
  compactor?.start();
  const progress = setInterval(() => hub.progressTick(), config["watch-progress-notify-interval"]);
  const stopWatchingConfig = config.topologyFile ? watchTopology(config, router, log) : () => {};

  const listen = new URL(config.listen);
  const clientUrls = config["advertise-client-urls"]
    ? config["advertise-client-urls"].split(",").map((s) => s.trim()).filter(Boolean)
    : [listen.origin];
  const connections = new Connections();
  const server = createGrpcServer({
    store: router,
    hub,
    leases,
    identity,
    member: { name: config.name, clientUrls },
    limits: { maxTxnOps: config["max-txn-ops"], maxRequestBytes: config["max-request-bytes"] },
    log,
    closing: connections.closing,
    tls,
    observer,
  });
  connections.track(server);
  if (config.tls) onShutdown("certificate reloading", superviseTls(server.listener as TlsServer, config.tls, log));
  const host = listen.hostname.replace(/^\[|\]$/g, "");
  const port = Number(listen.port || 2379);
  await server.listen(port, host);
  log("info", "serving etcd v3 API", {
    version,
    commit: commit(),
    listen: listen.origin,
    ...(config.tls && { clientCertAuth: config.tls.clientCertAuth }),
    backends: [...router.parts.map((p) => `${p.name}=${p.backend.name}`), ...[...router.upstreams].map(([n, u]) => `${n}=${u.name}`)].join(", "),
    revision: String(router.revision),
  });
  onShutdown("observer", () => observer.stop());
  if (config["metrics-listen"]) {
    const app = observabilityApp(observer, { name: config.name, version });
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
    clearInterval(progress);
    stopWatchingConfig();
    stopExternal();
    compactor?.stop();
    leases.stop();
    // no new connections; open ones get a GOAWAY, calls under way finish, watches and
    // lease keep-alives end with Unavailable so their clients reconnect elsewhere
    const idle = await Promise.race([connections.close().then(() => true), sleep(SESSIONS_GRACE_MS).then(() => false)]);
    if (!idle) {
      log("warn", "cutting connections whose calls did not finish", { connections: connections.open });
      connections.destroy();
    }
    // writes already queued commit before the databases close
    await router.drain();
    await runClosers(log);
    await router.close();
    log("info", "stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The default backend keeps the leases: a database, with copies in the other databases
 * and in any upstream etcd; or an upstream etcd, with copies in the databases.
 */
function leaseKeeper(router: Router): LeaseKeeper {
  const databases = router.parts.filter((p) => p !== router.primary);
  if (router.defaultUpstream) return new UpstreamLeases(router.defaultUpstream, databases);
  return new DatabaseLeases({ primary: router.primary!, others: databases }, () => router.latestRevision, [...router.upstreams.values()]);
}
