// From the options cli/ passes in to a running Router: open the topology's databases (an upstream
// etcd among the backends is the keyspace's, keyspace/open.ts), refuse to start when
// existing keys would become unreachable; the checks a new policy passes while strata
// serves (keyspace/routing-policy.ts applies it).
import { openBackend } from "../backends/open.ts";
import type { Backend, BackendState, ReadView } from "../mvcc/backend.ts";
import { isUpstreamUrl } from "../backends/etcd/scheme.ts";
import type { KeyValue } from "../mvcc/types.ts";
import { ConfigError } from "../util/config-error.ts";
import type { Topology } from "./contract.ts";
import { create } from "@bufbuild/protobuf";
import { type RangeRequest, RangeRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { keyString, prefixEnd, successor } from "../mvcc/keyrange.ts";
import { type KeyAnatomy, parseKey, prefixOf } from "./kubernetes-key.ts";
import type { Part } from "./part.ts";
import { Router } from "./router.ts";
import { RoutingTable } from "./rules.ts";

type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

/** An upstream etcd as the checks for unreachable keys read it: etcd's own Range. */
export interface UpstreamKeys {
  range(r: RangeRequest): Promise<{ kvs: Array<{ key: Uint8Array }>; count: bigint }>;
}

/** Opens the topology's database backends, default first (it keeps the leases); `wrap` may instrument each. */
async function openDatabases(
  t: Topology,
  poolSize: number,
  selectorIndex: boolean,
  wrap = (_name: string, b: Backend) => b,
): Promise<Array<{ name: string; backend: Backend }>> {
  const names = [t.default, ...[...t.backends.keys()].filter((n) => n !== t.default)];
  const out: Array<{ name: string; backend: Backend }> = [];
  for (const name of names) {
    const url = t.backends.get(name)!;
    if (isUpstreamUrl(url)) continue;
    const backend = await openBackend(url, { poolSize: t.settings?.get(name)?.poolSize ?? poolSize, selectorIndex }).catch(async (err: Error) => {
      await closeAll(out);
      throw new Error(t.backends.size > 1 ? `backend ${name}: ${err.message}` : err.message);
    });
    out.push({ name, backend: wrap(name, backend) });
  }
  return out;
}

function closeAll(backends: Array<{ backend: Backend }>): Promise<unknown> {
  return Promise.allSettled(backends.map((b) => b.backend.close()));
}

/** The first backend that is an upstream etcd, if any (keys are never copied into or out of one). */
export function upstreamIn(t: Topology): string | undefined {
  return [...t.backends].find(([, url]) => isUpstreamUrl(url))?.[0];
}

/** why strata does not move keys into or out of an upstream etcd */
export const UPSTREAM_KEYS_STAY = "strata does not copy keys into or out of an upstream etcd (etcd numbers its own revisions)";

/** What the router is opened with: values cli/ takes from the configuration. */
export interface RouterOptions {
  topology: Topology;
  /** connections to a database server, unless the topology sets its own */
  poolSize: number;
  /** index every write's labels and fields (--selector-index; Auto GC finds dependents through it) */
  selectorIndex: boolean;
  /** --quota-backend-bytes */
  quotaBytes: bigint;
  requestTimeoutMs: number;
  /** client reads, and client writes, that may wait on one database */
  maxWaiting: number;
  /** storage-side garbage collection (--auto-gc) */
  autoGc: boolean;
}

/**
 * Opens the router on the topology's databases, and refuses rules that would make keys
 * already stored unreachable (also keys in the upstream etcds, opened by the caller).
 */
export async function openRouter(
  options: RouterOptions,
  log: Log,
  wrap?: (name: string, b: Backend) => Backend,
  upstreams = new Map<string, UpstreamKeys>(),
  /** the rules in force from the start, read from the opened databases (the TopologyConfigs' after the config's) */
  startWith?: (backends: ReadView[]) => Promise<Topology>,
): Promise<{ router: Router; states: BackendState[] }> {
  const t = options.topology;
  if (t.ignored) log("warn", "topology fields strata does not honour", { source: t.source, fields: t.ignored });
  const backends = await openDatabases(t, options.poolSize, options.selectorIndex, wrap);
  let opened;
  try {
    const { quotaBytes, requestTimeoutMs, maxWaiting, autoGc } = options;
    opened = await Router.open(t, backends, log, { quotaBytes, requestTimeoutMs, maxWaiting, autoGc });
  } catch (err) {
    await closeAll(backends);
    throw err;
  }
  const { router } = opened;
  if (startWith) {
    try {
      router.setTopology(await startWith(router.parts.map((p) => p.backend)));
    } catch (err) {
      await router.close();
      throw err;
    }
  }
  const upstream = upstreamIn(t);
  if (options.autoGc && upstream) {
    log("warn", "auto-gc: keys in an upstream etcd get no storage-side garbage collection (strata does not write them in one transaction with its own)", { backend: upstream });
  }
  if (router.parts.length + upstreams.size > 1) {
    const stranded = await strandedKeys({ parts: router.parts, upstreams }, router.routing);
    if (stranded.length > 0) {
      await router.close();
      throw new ConfigError(strandedMessage(stranded, t.source));
    }
  }
  return opened;
}

export interface Stranded {
  /** where the keys are */
  from: string;
  /** where the rules send them */
  to: string;
  /** the keys' common prefix: resource, or resource and namespace */
  prefix: string;
  count: number;
  /** the keys are in, or go to, an upstream etcd */
  upstream?: boolean;
}

/** Keys a backend holds that the table routes to another backend, grouped by prefix. */
export async function strandedKeys(
  where: { parts: Part[]; upstreams?: Map<string, UpstreamKeys> },
  table: RoutingTable,
): Promise<Stranded[]> {
  const upstreams = where.upstreams ?? new Map<string, UpstreamKeys>();
  const fromUpstreams: Stranded[] = [];
  for (const [name, u] of upstreams) fromUpstreams.push(...(await strandedInUpstream(name, u, table)));
  const out = new Map<string, Stranded>();
  for (const p of where.parts) {
    await eachKey(p.backend, (key) => {
      const k = keyString(key);
      const to = table.route(k);
      if (to === p.name) return;
      const prefix = groupPrefix(k, table.keyPrefixes);
      const id = `${p.name}\u0000${to}\u0000${prefix}`;
      const s = out.get(id) ?? { from: p.name, to, prefix, count: 0, upstream: upstreams.has(to) };
      s.count++;
      out.set(id, s);
    });
  }
  return [...fromUpstreams, ...out.values()];
}

/**
 * Keys an upstream etcd holds that the table routes elsewhere. Rules cover whole
 * resources when there is an upstream, so the first key of each resource tells where all
 * of it goes: etcd is asked for one key and one count per resource, not for every key.
 * Keys outside the Kubernetes prefixes all go to the default backend.
 */
async function strandedInUpstream(name: string, u: UpstreamKeys, table: RoutingTable): Promise<Stranded[]> {
  const out: Stranded[] = [];
  const bytes = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));
  const count = async (key: Uint8Array, rangeEnd: Uint8Array) =>
    Number((await u.range(create(RangeRequestSchema, { key, rangeEnd, countOnly: true }))).count);
  const prefixes = [...table.keyPrefixes].sort();
  const everything = new Uint8Array([0]);
  let from: Uint8Array = new Uint8Array([0]);
  for (;;) {
    const first = (await u.range(create(RangeRequestSchema, { key: from, rangeEnd: everything, limit: 1n, keysOnly: true }))).kvs[0];
    if (!first) return out;
    const k = keyString(first.key);
    const to = table.route(k);
    // the stretch of keys the first one stands for: its resource, the keys up to the next
    // Kubernetes prefix (or after the last), or just itself
    let prefix: string, end: Uint8Array;
    const resource = resourcePrefix(k, table.keyPrefixes);
    const next = prefixes.find((p) => k < p);
    if (resource !== undefined) [prefix, end] = [resource, prefixEnd(bytes(resource))!];
    else if (prefixOf(k, prefixes) !== undefined) [prefix, end] = [k, successor(first.key)];
    else if (next !== undefined) [prefix, end] = [`keys before ${next}`, bytes(next)];
    else [prefix, end] = [`keys after ${prefixes.at(-1)}`, everything];
    if (to !== name) out.push({ from: name, to, prefix, count: await count(first.key, end), upstream: true });
    if (end === everything) return out;
    from = end;
  }
}

/** /registry/[group/]resource/ of a Kubernetes object key */
function resourcePrefix(key: string, keyPrefixes: readonly string[]): string | undefined {
  const a = parseKey(key, keyPrefixes);
  return a && `${a.prefix}${a.group ? `${a.group}/` : ""}${a.resource}/`;
}

/** `fix`: what moves the keys, when not the migrate command (a TopologyConfig's spec.migrate) */
export function strandedMessage(stranded: Stranded[], file: string, fix?: string): string {
  const shown = stranded.slice(0, 5).map((s) => `${s.count} under ${s.prefix} (in ${s.from}, rules say ${s.to})`).join("; ");
  const more = stranded.length > 5 ? `; and ${stranded.length - 5} more prefixes` : "";
  fix = stranded.some((s) => s.upstream)
    ? `${UPSTREAM_KEYS_STAY}: route these resources back, or copy them with the etcd's own tools while nothing writes them`
    : fix ?? `Move them first: strata migrate --to-config ${file} --endpoint URL (strata running with the old rules) or --from-config OLD.yaml (stopped)`;
  return `${file}: these rules would make existing keys unreachable: ${shown}${more}. ${fix}`;
}

/** Calls fn for every live key of a backend, in pages. */
export function eachKey(backend: ReadView, fn: (key: Uint8Array) => void): Promise<void> {
  return eachPage(backend, true, async (kvs) => kvs.forEach((kv) => fn(kv.key)));
}

/** Calls fn with every live key (and value, unless keysOnly) of a backend at revision (0: now), a page at a time. */
export async function eachPage(backend: ReadView, keysOnly: boolean, fn: (kvs: KeyValue[]) => Promise<void>, revision = 0n): Promise<void> {
  let start = new Uint8Array([0]);
  for (;;) {
    const page = await backend.range({ range: { start, end: undefined }, revision, limit: 5000, countOnly: false, keysOnly });
    await fn(page.kvs);
    if (page.kvs.length < 5000) return;
    const last = page.kvs.at(-1)!.key;
    start = new Uint8Array(last.length + 1);
    start.set(last);
  }
}

/** The prefix a key is reported under: /registry/[group/]resource/[namespace/], or its parent. */
function groupPrefix(key: string, keyPrefixes: readonly string[]): string {
  const a: KeyAnatomy | undefined = parseKey(key, keyPrefixes);
  if (!a) return key.includes("/") ? key.slice(0, key.lastIndexOf("/") + 1) : key;
  return [a.prefix.replace(/\/$/, ""), a.group, a.resource, a.sub, a.namespace].filter((s) => s !== undefined).join("/") + "/";
}

export function sameTopology(a: Topology, b: Topology): boolean {
  return JSON.stringify(summary(a)) === JSON.stringify(summary(b));
}

function summary(t: Topology) {
  return { backends: [...t.backends], default: t.default, keyPrefixes: t.keyPrefixes, rules: t.rules.map((r) => [r.match, r.backend]) };
}

/** undefined when next only appends rules to current; otherwise what changed */
export function appendOnly(current: Topology, next: Topology): string | undefined {
  if (JSON.stringify([...current.backends]) !== JSON.stringify([...next.backends])) return "the backends changed";
  if (current.default !== next.default) return "the default backend changed";
  if (String(current.keyPrefixes) !== String(next.keyPrefixes)) return "key-prefix changed";
  if (next.rules.length < current.rules.length) return "routes were removed";
  for (let i = 0; i < current.rules.length; i++) {
    const a = current.rules[i]!, b = next.rules[i]!;
    if (JSON.stringify([a.match, a.backend]) !== JSON.stringify([b.match, b.backend])) return `${b.source} changed (only routes appended at the end apply live)`;
  }
  return undefined;
}
