#!/usr/bin/env bun
// The strata command line: dispatches to the commands in cli/; `strata` (or `strata serve`)
// runs the etcd v3 API on the configured backend.
import { commit, version } from "./cli/build-info.ts";
import { importCommand } from "./cli/import.ts";
import { reindexCommand } from "./cli/reindex.ts";
import { migrateCommand } from "./cli/migrate.ts";
import { routeCommand } from "./cli/route.ts";
import { serveCommand } from "./cli/serve.ts";
import { flagsHelp } from "./config/config.ts";
import { log } from "./observe/log.ts";

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

function usage(): string {
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
    console.log(usage());
    return;
  }
  if (command === "route") process.exit(await routeCommand(rest));
  if (command === "migrate") process.exit(await migrateCommand(rest));
  if (command === "import") process.exit(await importCommand(rest));
  if (command === "reindex") process.exit(await reindexCommand(rest));
  // no command, or flags alone, means serve
  const serveArgs = command === "serve" ? rest : argv;
  if (command !== undefined && command !== "serve" && !command.startsWith("-")) {
    console.error(`strata: unknown command "${command}"; try strata --help`);
    process.exit(2);
  }
  await serveCommand(serveArgs);
}

await main(process.argv.slice(2));
