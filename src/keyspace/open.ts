// From configuration to the running Keyspace, wired in one place: the router on the
// databases with the watch hub, leases and compaction (database.ts), one EtcdKeyspace per
// upstream etcd, and the dispatcher over them.
import { EtcdKeyspace } from "../backends/etcd/etcd-keyspace.ts";
import type { Config } from "../config/config.ts";
import type { Backend } from "../mvcc/backend.ts";
import { type Identity, openRouter, watchTopology } from "../router/open.ts";
import { DatabaseKeyspace } from "./database.ts";
import { Dispatcher } from "./dispatcher.ts";

type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

/** Opens every backend (`wrap` may instrument each database); nothing runs until `start`. */
export async function openKeyspace(
  config: Config,
  log: Log,
  wrap?: (name: string, b: Backend) => Backend,
): Promise<{ keyspace: Dispatcher; identity: Identity }> {
  const { router, upstreams, identity } = await openRouter(config, log, wrap);
  const database = new DatabaseKeyspace(router, {
    compaction: config.autoCompaction,
    progressIntervalMs: config["watch-progress-notify-interval"],
    upstreamLeases: [...upstreams.values()],
  });
  const copies = database.leaseCopies;
  const etcds = new Map([...upstreams].map(([name, u]) => [name, new EtcdKeyspace(name, u, copies)]));
  return { keyspace: new Dispatcher(database, etcds), identity };
}

/** Follows the config file for routes appended at the end (router/open.ts); returns the function that stops. */
export function followConfigFile(config: Config, keyspace: Dispatcher, log: Log): () => void {
  const upstreams = new Map([...keyspace.upstreams].map(([name, k]) => [name, k.upstream]));
  return watchTopology(config, keyspace.database.router, upstreams, log);
}
