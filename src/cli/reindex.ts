// `strata reindex [--config FILE | --backend URL]`: builds the selector index (label and
// field selectors answered in the database) for the rows a database held before this
// strata version added it. Until then those databases' selected lists are filtered by
// strata, correct but reading the whole range. PostgreSQL and MySQL can be indexed while
// strata serves them; an SQLite file belongs to one process, so stop strata first (NATS
// indexes its local copy by itself). Safe to run again: rows indexed once are skipped.
import { composeTopology } from "../keyspace/routing-policy.ts";
import { restoreTopologyConfigs } from "../keyspace/topology-configs.ts";
import type { ReadView } from "../mvcc/backend.ts";
import { ConfigError } from "../config/config.ts";
import { readTopologyConfig } from "../config/topology.ts";
import { openRouter } from "../router/open.ts";
import { loadCheckedConfig, routerOptions } from "./config.ts";

export async function reindexCommand(args: string[]): Promise<number> {
  let config;
  try {
    config = loadCheckedConfig(args, process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`strata: configuration error: ${err.message}`);
    return 2;
  }
  const log = (level: string, msg: string, fields: Record<string, unknown> = {}) => console.error(JSON.stringify({ level, msg, ...fields }));
  let router;
  try {
    // keys TopologyConfigs placed are where their rules say, as when strata serves
    const startWith = config["topology-configs"]
      ? async (backends: ReadView[]) => composeTopology(config.topology, await restoreTopologyConfigs(backends, config.topology, readTopologyConfig, log))
      : undefined;
    router = (await openRouter({ ...routerOptions(config), selectorIndex: true }, () => {}, undefined, undefined, startWith)).router;
  } catch (err) {
    console.error(`strata reindex: cannot open the backends: ${(err as Error).message}`);
    return 1;
  }
  try {
    for (const p of router.parts) {
      if (!p.backend.buildSelectIndex) {
        log("info", "no selector index: selected lists are filtered by strata", { backend: p.name });
        continue;
      }
      const started = Date.now();
      const rows = await p.backend.buildSelectIndex((n) => process.stderr.write(`\rstrata reindex: ${p.name}: ${n} rows indexed`));
      if (rows > 0) process.stderr.write("\n");
      log("info", rows > 0 ? "selector index built" : "selector index already complete", { backend: p.name, rows, ms: Date.now() - started });
    }
    return 0;
  } catch (err) {
    process.stderr.write("\n");
    console.error(`strata reindex: stopped: ${(err as Error).message}`);
    return 1;
  } finally {
    await router.close();
  }
}
