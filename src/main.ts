#!/usr/bin/env bun
// The strata command line: `strata serve` runs the etcd v3 API on the configured backend.
import { createGrpcServer } from "./api/server.ts";
import { openBackend } from "./backends/open.ts";
import { AutoCompactor } from "./engine/compactor.ts";
import { LeaseKeeper } from "./engine/leases.ts";
import { Store } from "./engine/store.ts";
import { WatchHub } from "./engine/watch-hub.ts";
import { type Config, ConfigError, helpText, loadConfig } from "./config/config.ts";
import pkg from "../package.json" with { type: "json" };

const log = (level: string, msg: string, fields: Record<string, unknown> = {}) =>
  console.error(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));

async function serve(config: Config): Promise<void> {
  const backend = await openBackend(config.backend, { poolSize: config["pool-size"] });
  const state = await backend.open().catch((err: Error) => {
    throw new Error(`backend ${backend.name}: ${err.message}`);
  });
  const store = new Store(backend);
  store.init(state.revision, state.compactRevision);
  const hub = new WatchHub(backend, () => ({ revision: store.revision, compactRevision: store.compactRevision }));
  store.onCommit((c) => hub.publish(c.revision, c.events));
  // commits by other strata processes on the same database reach this one's watchers
  const stopExternal = backend.onExternalCommit(() =>
    void store.syncExternal().catch((err) => log("warn", "reading other processes' commits failed", { error: String(err) }))
  );
  const leases = new LeaseKeeper(store, backend);
  leases.start();
  const compactor = config.autoCompaction ? new AutoCompactor(store, config.autoCompaction) : undefined;
  compactor?.start();
  const progress = setInterval(() => hub.progressTick(), config["watch-progress-notify-interval"]);

  const listen = new URL(config.listen);
  const clientUrls = config["advertise-client-urls"]
    ? config["advertise-client-urls"].split(",").map((s) => s.trim()).filter(Boolean)
    : [listen.origin];
  const server = createGrpcServer({
    store,
    hub,
    leases,
    backend,
    identity: { clusterId: state.clusterId, memberId: state.memberId },
    member: { name: config.name, clientUrls },
    limits: { maxTxnOps: config["max-txn-ops"], maxRequestBytes: config["max-request-bytes"] },
  });
  const host = listen.hostname.replace(/^\[|\]$/g, "");
  const port = Number(listen.port || 2379);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  log("info", "serving etcd v3 API", { listen: listen.origin, backend: backend.name, revision: String(state.revision) });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log("info", "shutting down", { signal });
    clearInterval(progress);
    stopExternal();
    compactor?.stop();
    leases.stop();
    // stop accepting, let queued writes commit, then close the database
    server.close();
    await Promise.race([store.drain(), new Promise((r) => setTimeout(r, 10_000))]);
    await backend.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

/**
 * The postgres driver can write to a connection's socket from a timer that fires after
 * the connection closed (seen when the database goes down under load on Bun). The
 * connection is already discarded and its queries failed, so that one error is logged
 * and survived; any other uncaught error ends the process, as it should.
 */
function isDriverWriteAfterClose(err: unknown): boolean {
  return err instanceof TypeError && /socket/.test(err.message) && /\bnextWrite\b/.test(err.stack ?? "");
}

process.on("uncaughtException", (err) => {
  if (isDriverWriteAfterClose(err)) {
    log("warn", "database connection closed while writing; it is discarded", { error: err.message });
    return;
  }
  log("fatal", "uncaught error", { error: String(err?.stack ?? err) });
  process.exit(1);
});

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === "--version" || command === "version") {
    console.log(`strata ${pkg.version}`);
    return;
  }
  if (!command || command === "--help" || command === "-h" || command === "help") {
    console.log(`strata ${pkg.version}: an etcd-compatible storage router for Kubernetes\n\nCommands:\n  serve    serve the etcd v3 API (strata serve --help)\n  version  print the version`);
    return;
  }
  if (command !== "serve") {
    console.error(`strata: unknown command "${command}"; try strata --help`);
    process.exit(2);
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(helpText());
    return;
  }
  let config: Config;
  try {
    config = loadConfig(rest, process.env);
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
    console.error(`strata: cannot start: ${(err as Error).message}`);
    process.exit(1);
  }
}

await main(process.argv.slice(2));
