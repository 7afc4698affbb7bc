// Where the config source's routing comes from, as HariKube's TOPOLOGY_CONFIG names it
// (strata's --config too): a file (PATH or file://PATH, rescanned), an http(s):// URL
// (fetched again every --topology-poll-interval, with its ETag; a failed fetch keeps the
// running rules and is logged), or secret://NAMESPACE/NAME (a Secret kept in strata's
// default backend, as kube-apiserver stores it: protobuf or JSON; its files read in name
// order and merged; a change is seen through a watch). Every new version goes through the
// routing policy (routing-policy.ts): only appended rules apply while strata serves.
import { watchFile, unwatchFile } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { RangeRequestSchema, WatchCreateRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { openBackend } from "../backends/open.ts";
import { DEFAULT_KEY_PREFIX, type Topology } from "../router/contract.ts";
import { ConfigError } from "../util/config-error.ts";
import { DELETE } from "../mvcc/types.ts";
import type { Log } from "../util/log.ts";
import { sameTopology } from "../router/open.ts";
import { validateTopology } from "../router/validate.ts";
import type { Keyspace } from "./contract.ts";
import type { RoutingPolicy } from "./routing-policy.ts";
import { secretData } from "./stored-object.ts";
import type { TopologyConfigs } from "./topology-configs.ts";

/** a fetch that takes longer fails (and the running rules stay) */
const FETCH_TIMEOUT_MS = 10_000;

/** the key kube-apiserver keeps a Secret under (its default --etcd-prefix) */
export function secretKey(s: { namespace: string; name: string }): string {
  return `${DEFAULT_KEY_PREFIX}secrets/${s.namespace}/${s.name}`;
}

/** A topology strata fetches: HariKube's TOPOLOGY_CONFIG=http(s)://URL or secret://NAMESPACE/NAME. */
export type RemoteTopology = { kind: "url"; url: string } | { kind: "secret"; namespace: string; name: string; source: string };

/**
 * How a source's documents become topologies, read as a config file is (config/ reads
 * them; cli/ passes that in). Each throws a ConfigError naming the source and the field;
 * what the router can serve is checked here after.
 */
export interface TopologyDocuments {
  /** a fetched document's text, named `source` */
  text(text: string, source: string): Topology;
  /** a Secret's files, in name order, as one topology */
  secret(files: Map<string, Uint8Array>, source: string): Topology;
  /** the config file, read again */
  file(path: string): Topology;
}

/** The config source's routing, followed while strata serves. */
export interface TopologySource {
  /** the config file the topology came from, watched for appended rules */
  file: string | undefined;
  /** a topology served elsewhere (a URL, a Secret) */
  remote: RemoteTopology | undefined;
  /** how often a URL is fetched again (--topology-poll-interval) */
  pollIntervalMs: number;
  documents: TopologyDocuments;
}

/** A read topology, once the router can serve it. */
function checked(t: Topology): Topology {
  validateTopology(t);
  return t;
}

/** Fetches a URL's topology; `etag`: the version held (answered 304 when unchanged). */
async function fetchTopology(documents: TopologyDocuments, url: string, etag?: string): Promise<{ topology?: Topology; etag?: string }> {
  const res = await fetch(url, { headers: etag ? { "If-None-Match": etag } : {}, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  if (res.status === 304) return { etag };
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  return { topology: checked(documents.text(await res.text(), url)), etag: res.headers.get("etag") ?? undefined };
}

/**
 * The topology a URL or Secret holds, read before strata opens its databases; a Secret is
 * read from the default backend (`backendUrl`, --backend), which its topology must keep as
 * the default.
 */
export async function readRemoteTopology(backendUrl: string, source: RemoteTopology, documents: TopologyDocuments): Promise<Topology> {
  if (source.kind === "url") {
    const { topology } = await fetchTopology(documents, source.url).catch((err: Error) => {
      throw new ConfigError(`${source.url}: cannot fetch the topology: ${err.message}`);
    });
    return topology!;
  }
  const backend = await openBackend(backendUrl, { poolSize: 1 });
  let files: Map<string, Uint8Array> | undefined;
  try {
    await backend.open();
    const key = new TextEncoder().encode(secretKey(source));
    const kv = (await backend.range({ range: { start: key, end: undefined }, revision: 0n, limit: 1, countOnly: false, keysOnly: false })).kvs[0];
    if (!kv) throw new ConfigError(`${source.source}: no Secret at ${secretKey(source)} in ${backend.name} (--backend)`);
    files = secretData(kv.value);
    if (!files) throw new ConfigError(`${source.source}: the Secret at ${secretKey(source)} cannot be read (encrypted at rest, or not a Secret)`);
  } finally {
    await backend.close();
  }
  const t = checked(documents.secret(files, source.source));
  if (t.backends.get(t.default) !== backendUrl) {
    throw new ConfigError(`${source.source}: its default backend ${t.default} is not ${backend.name}, where the Secret is kept (--backend); make that its default backend`);
  }
  return t;
}

/** Follows the config source for new versions; returns the function that stops. */
export function followTopologySource(
  from: TopologySource,
  keyspace: Keyspace,
  policy: RoutingPolicy,
  configs: TopologyConfigs | undefined,
  log: Log,
): () => void {
  const apply = (next: Topology, source: string) =>
    policy.lock.run(async () => {
      // a source fetched again unchanged (a server without ETags) costs no evaluation
      if (sameTopology(policy.baseTopology, next)) return;
      const reason = await policy.setBase(next);
      if (reason) return log("error", "config change refused", { source, reason });
      await configs?.baseChanged();
    });
  const refused = (source: string, err: unknown) => log("error", "config change refused", { source, reason: (err as Error).message });

  if (from.file) {
    const file = from.file;
    const check = () => {
      let next: Topology;
      try {
        next = checked(from.documents.file(file));
      } catch (err) {
        return refused(file, err);
      }
      void apply(next, file).catch((err) => log("error", "config change could not be checked", { source: file, error: String(err) }));
    };
    watchFile(file, { interval: 1000 }, check);
    return () => unwatchFile(file);
  }
  const source = from.remote;
  if (source?.kind === "url") {
    let etag: string | undefined;
    let failing = false;
    const poll = async () => {
      try {
        const got = await fetchTopology(from.documents, source.url, etag);
        if (failing) log("info", "the topology URL answers again", { source: source.url });
        failing = false;
        etag = got.etag;
        if (got.topology) await apply(got.topology, source.url);
      } catch (err) {
        if (err instanceof ConfigError) return refused(source.url, err);
        failing = true;
        log("warn", "fetching the topology failed; the running rules stay", { source: source.url, error: (err as Error).message });
      }
    };
    const timer = setInterval(() => void poll(), from.pollIntervalMs);
    return () => clearInterval(timer);
  }
  if (source?.kind === "secret") return watchSecret(source, keyspace, from.documents, (t) => apply(t, source.source), log);
  return () => {};
}

/** Watches the Secret's key; each new version is read as the topology. */
function watchSecret(source: Extract<RemoteTopology, { kind: "secret" }>, keyspace: Keyspace, documents: TopologyDocuments, apply: (t: Topology) => Promise<void>, log: Log): () => void {
  const key = new TextEncoder().encode(secretKey(source));
  let stopped = false;
  let session: ReturnType<Keyspace["watch"]> | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const start = async () => {
    if (stopped) return;
    // from the revision read now: a change made while the watch was away is read here
    let from: bigint;
    try {
      const got = await keyspace.range(create(RangeRequestSchema, { key }));
      from = got.header.revision + 1n;
      const kv = got.kvs[0];
      if (kv) await read(kv.value);
    } catch (err) {
      log("warn", "reading the topology Secret failed; the running rules stay", { source: source.source, error: (err as Error).message });
      retry = setTimeout(() => void start(), 1000);
      return;
    }
    session = keyspace.watch({
      own: true,
      send: (resp) => {
        if (resp.canceled) return restart();
        for (const ev of resp.events) {
          if (ev.type === DELETE) log("warn", "the topology Secret was deleted; the running rules stay", { source: source.source });
          else void read(ev.kv.value);
        }
      },
      forget: () => restart(),
      congested: () => false,
      drained: async () => {},
    });
    session.create(create(WatchCreateRequestSchema, { key, startRevision: from }), 1n);
  };
  const restart = () => {
    session?.close();
    session = undefined;
    if (!stopped) retry = setTimeout(() => void start(), 1000);
  };
  const read = async (value: Uint8Array) => {
    const files = secretData(value);
    if (!files) return log("error", "config change refused", { source: source.source, reason: "the Secret cannot be read (encrypted at rest, or not a Secret)" });
    let t: Topology;
    try {
      t = checked(documents.secret(files, source.source));
    } catch (err) {
      return log("error", "config change refused", { source: source.source, reason: (err as Error).message });
    }
    await apply(t);
  };
  void start();
  return () => {
    stopped = true;
    clearTimeout(retry);
    session?.close();
  };
}
