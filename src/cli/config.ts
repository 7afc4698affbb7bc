// The configuration the commands run with: config/ parses flags, environment and file,
// then the topology is checked against what the router can serve (router/validate.ts)
// before any backend is opened. Config parsing stays free of the router; the commands,
// which compose the two, call this, and turn the configuration into the values each layer
// is opened with (routerOptions, keyspaceOptions): no layer imports config/.
import { type Config, ConfigError, loadConfig } from "../config/config.ts";
import type { Topology } from "../router/contract.ts";
import { normaliseEndpoint } from "../config/endpoint.ts";
import { topologyDocuments } from "../config/topology-documents.ts";
import { readTopologyConfig } from "../config/topology.ts";
import type { KeyspaceOptions } from "../keyspace/open.ts";
import { readRemoteTopology } from "../keyspace/topology-sources.ts";
import type { RouterOptions } from "../router/open.ts";
import { validateTopology } from "../router/validate.ts";

/**
 * loadConfig, then validateTopology; throws ConfigError naming the file, field and fix.
 * Only `strata serve` reads a topology from a URL or a Secret (once it runs): the other
 * commands say so rather than work on the default backend alone.
 */
export function loadCheckedConfig(argv: string[], env: Record<string, string | undefined>, remote = false): Config {
  const config = loadConfig(argv, env);
  const source = config.topologySource;
  if (source && !remote) {
    throw new ConfigError(`${source.kind === "url" ? source.url : source.source}: only strata serve reads a topology from a URL or a Secret; give this command the topology as a file (--config FILE)`);
  }
  validateTopology(config.topology);
  return config;
}

/** The router's options from the configuration. */
export function routerOptions(config: Config): RouterOptions {
  return {
    topology: config.topology,
    poolSize: config["pool-size"],
    // Auto GC finds dependents through the selector index's ownership entries
    selectorIndex: config["selector-index"] || config["auto-gc"],
    quotaBytes: BigInt(config["quota-backend-bytes"]),
    requestTimeoutMs: config["request-timeout"],
    maxWaiting: config["max-waiting-requests"],
    autoGc: config["auto-gc"],
  };
}

/** The keyspace's options from the configuration (`strata serve`). */
export function keyspaceOptions(config: Config): KeyspaceOptions {
  const file = (s: string) => (s === "" ? undefined : s);
  return {
    router: routerOptions(config),
    upstreamTls: { ca: file(config["etcd-cafile"]), cert: file(config["etcd-certfile"]), key: file(config["etcd-keyfile"]) },
    compaction: config.autoCompaction,
    progressIntervalMs: config["watch-progress-notify-interval"],
    topologyConfigs: config["topology-configs"] ? readTopologyConfig : undefined,
    source: {
      file: config.topologyFile,
      remote: config.topologySource,
      pollIntervalMs: config["topology-poll-interval"],
      documents: topologyDocuments,
    },
  };
}

/** The topology a URL or Secret holds (config.topologySource), read before strata opens its databases. */
export function remoteTopology(config: Config): Promise<Topology> | undefined {
  const source = config.topologySource;
  return source && readRemoteTopology(normaliseEndpoint(config.backend), source, topologyDocuments);
}
