// From the options cli/ passes in to the running Keyspace, wired in one place: the router on the
// databases with the watch hub, leases and compaction (database.ts), one EtcdKeyspace per
// upstream etcd, and the dispatcher over them.
import type { EtcdKeyspace } from "../backends/etcd/etcd-keyspace.ts";
import { isUpstreamUrl } from "../backends/etcd/scheme.ts";
import type { Upstream, UpstreamTls } from "../backends/etcd/upstream.ts";
import type { Backend, ReadView } from "../mvcc/backend.ts";
import { openRouter, type RouterOptions } from "../router/open.ts";
import type { Retention } from "./compactor.ts";
import { DatabaseKeyspace } from "./database.ts";
import { Dispatcher } from "./dispatcher.ts";
import { composeTopology, type PolicyEntry, RoutingPolicy } from "./routing-policy.ts";
import { type ReadTopologyConfig, restoreTopologyConfigs, TopologyConfigs } from "./topology-configs.ts";
import { followTopologySource, type TopologySource } from "./topology-sources.ts";

type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

/** cluster and member ids the response headers carry */
export interface Identity {
  clusterId: bigint;
  memberId: bigint;
}

/** What the keyspace is opened with: values cli/ takes from the configuration. */
export interface KeyspaceOptions {
  router: RouterOptions;
  /** the TLS files for etcds:// upstreams whose URLs name none */
  upstreamTls: UpstreamTls;
  /** automatic compaction (--auto-compaction-mode/retention); undefined: none */
  compaction: Retention | undefined;
  /** how often idle watchers that asked for progress notifications get one */
  progressIntervalMs: number;
  /** how a TopologyConfig object is read; undefined: they are not followed (--topology-configs=false) */
  topologyConfigs: ReadTopologyConfig | undefined;
  /** the config source, followed for appended routes while strata serves */
  source: TopologySource;
}

/** set in the member id strata reports for an upstream's cluster, so it differs from etcd's members */
const STRATA_MEMBER_BITS = 0x737472617461n; // "strata"

/**
 * Opens every backend (`wrap` may instrument each database); nothing runs until `start`.
 * The identity is the default backend's: an upstream's cluster id, with a member id of
 * strata's own.
 */
export async function openKeyspace(
  options: KeyspaceOptions,
  log: Log,
  wrap?: (name: string, b: Backend) => Backend,
): Promise<{ keyspace: Dispatcher; identity: Identity; topologyConfigs: PolicyEntry[] }> {
  const t = options.router.topology;
  const several = t.backends.size > 1;
  const upstreams = new Map<string, Upstream>();
  const answers = new Map<string, { clusterId: bigint; memberId: bigint }>();
  // the etcd client (a gRPC transport of its own) loads only when an upstream is configured
  const relay = [...t.backends.values()].some(isUpstreamUrl)
    ? { ...(await import("../backends/etcd/upstream.ts")), ...(await import("../backends/etcd/etcd-keyspace.ts")) }
    : undefined;
  try {
    for (const [name, url] of t.backends) {
      if (!isUpstreamUrl(url) || !relay) continue;
      const { Upstream } = relay;
      try {
        upstreams.set(name, Upstream.fromUrl(url, options.upstreamTls, several ? name : undefined, options.router.requestTimeoutMs));
      } catch (err) {
        throw new Error(several ? `backend ${name}: ${(err as Error).message}` : (err as Error).message);
      }
    }
    // every upstream answers before anything else is opened
    await Promise.all([...upstreams].map(async ([name, u]) => {
      const a = await u.open().catch((err: Error) => {
        throw new Error(`backend ${several ? `${name} (${u.name})` : u.name}: ${err.message}`);
      });
      answers.set(name, a);
    }));
  } catch (err) {
    for (const u of upstreams.values()) u.close();
    throw err;
  }
  let router, states;
  // the TopologyConfigs in force when strata last ran: their keys are where their rules say
  let topologyConfigs: PolicyEntry[] = [];
  const read = options.topologyConfigs;
  const startWith = read
    ? async (backends: ReadView[]) => composeTopology(t, (topologyConfigs = await restoreTopologyConfigs(backends, t, read, log)))
    : undefined;
  try {
    ({ router, states } = await openRouter(options.router, log, wrap, upstreams, startWith));
  } catch (err) {
    for (const u of upstreams.values()) u.close();
    throw err;
  }
  const up = answers.get(t.default);
  const identity = up
    // strata answers for the upstream's cluster as a member of its own
    ? { clusterId: up.clusterId, memberId: up.memberId ^ STRATA_MEMBER_BITS }
    : { clusterId: states[router.primary!.index]!.clusterId, memberId: states[router.primary!.index]!.memberId };
  router.alarms.memberId = identity.memberId;
  // a server's first list of a large resource then finds its count kept
  router.warmCounts();
  const database = new DatabaseKeyspace(router, {
    compaction: options.compaction,
    progressIntervalMs: options.progressIntervalMs,
    upstreamLeases: [...upstreams.values()],
  });
  const copies = database.leaseCopies;
  const etcds = new Map<string, EtcdKeyspace>([...upstreams].map(([name, u]) => [name, new relay!.EtcdKeyspace(name, u, copies)]));
  return { keyspace: new Dispatcher(database, etcds), identity, topologyConfigs };
}

/**
 * Follows the routing policy's sources while strata serves: the config source (file, URL,
 * Secret) for appended routes, and the TopologyConfig objects in the keyspace unless
 * --topology-configs=false. Returns the function that stops.
 */
export function followRoutingPolicy(options: KeyspaceOptions, keyspace: Dispatcher, log: Log, inForce: PolicyEntry[]): () => void {
  const router = keyspace.database.router;
  const upstreams = new Map([...keyspace.upstreams].map(([name, k]) => [name, k.upstream]));
  const policy = new RoutingPolicy(router, upstreams, keyspace, log, options.router.topology, inForce);
  const read = options.topologyConfigs;
  const configs = read ? new TopologyConfigs(keyspace, policy, read, router.topology.keyPrefixes[0]!, log) : undefined;
  configs?.start();
  const stopSource = followTopologySource(options.source, keyspace, policy, configs, log);
  return () => {
    stopSource();
    configs?.stop();
  };
}
