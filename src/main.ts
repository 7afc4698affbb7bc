#!/usr/bin/env bun
// The strata command line: dispatches to the commands in cli/; `strata` (or `strata serve`)
// runs the etcd v3 API on the configured backend. Each command's code loads when that
// command runs, so `strata --version` answers at once and a server holds only its own.
import { commit, version } from "./cli/build-info.ts";
import { log } from "./util/log.ts";

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

async function usage(): Promise<string> {
  const { flagsHelp } = await import("./config/config.ts");
  return `strata ${version}: an etcd-compatible storage router for Kubernetes

Usage: strata [command] [flags]       (no command: serve)

Commands:
  serve                 serve the etcd v3 API (the default)
  route explain KEY     which rule and backend a key lands on (--config FILE)
  route list            the effective topology: backends, rules in order, default
  migrate --to-config NEW --endpoint URL
                        move keys whose backend the new rules change while the
                        strata at URL serves, then put the rules in force
                        (https:// URL: --cacert, --cert, --key as etcdctl's)
  migrate --from-config OLD --to-config NEW
                        the same with strata stopped (resumable)
  import --from URL     copy a live etcd's keyspace into the configured backends
                        (https:// URL: --cacert, --cert, --key as etcdctl's)
  reindex               build the selector index of rows written before it existed
                        (databases from strata before 2026-12; SQLite: strata stopped)
  version               print the version and the commit it was built from

${flagsHelp()}`;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === "--version" || command === "version") {
    console.log(`strata ${version} (commit ${commit()})`);
    return;
  }
  if (command === "--help" || command === "-h" || command === "help") {
    console.log(await usage());
    return;
  }
  if (command === "route") process.exit(await (await import("./cli/route.ts")).routeCommand(rest));
  if (command === "migrate") process.exit(await (await import("./cli/migrate.ts")).migrateCommand(rest));
  if (command === "import") process.exit(await (await import("./cli/import.ts")).importCommand(rest));
  if (command === "reindex") process.exit(await (await import("./cli/reindex.ts")).reindexCommand(rest));
  // no command, or flags alone, means serve
  const serveArgs = command === "serve" ? rest : argv;
  if (command !== undefined && command !== "serve" && !command.startsWith("-")) {
    console.error(`strata: unknown command "${command}"; try strata --help`);
    process.exit(2);
  }
  const { serveCommand } = await import("./cli/serve.ts");
  await serveCommand(serveArgs);
}

await main(process.argv.slice(2));
