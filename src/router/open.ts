// From configuration to a running Router: validate the topology, open every backend,
// refuse to start when existing keys would become unreachable, and follow the config
// file for rules appended at the end.
import { watchFile, unwatchFile } from "node:fs";
import { openBackend } from "../backends/open.ts";
import type { Backend, BackendState } from "../backends/backend.ts";
import type { KeyValue } from "../engine/types.ts";
import { type Config, ConfigError, readConfigFile } from "../config/config.ts";
import { readTopology, type Topology } from "../config/topology.ts";
import { type KeyAnatomy, parseKey } from "./kubernetes-key.ts";
import { keyString, type Part, Router } from "./router.ts";
import { RoutingTable } from "./rules.ts";
import { validateTopology } from "./validate.ts";

type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

/** Opens the topology's backends, default first (it keeps the leases); `wrap` may instrument each. */
export async function openBackends(t: Topology, poolSize: number, wrap = (_name: string, b: Backend) => b): Promise<Array<{ name: string; backend: Backend }>> {
  const names = [t.default, ...[...t.backends.keys()].filter((n) => n !== t.default)];
  const out: Array<{ name: string; backend: Backend }> = [];
  try {
    for (const name of names) {
      const backend = await openBackend(t.backends.get(name)!, { poolSize }).catch((err: Error) => {
        throw new Error(t.backends.size > 1 ? `backend ${name}: ${err.message}` : err.message);
      });
      out.push({ name, backend: wrap(name, backend) });
    }
  } catch (err) {
    await Promise.allSettled(out.map((b) => b.backend.close()));
    throw err;
  }
  return out;
}

export async function openRouter(config: Config, log: Log, wrap?: (name: string, b: Backend) => Backend): Promise<{ router: Router; states: BackendState[] }> {
  const t = config.topology;
  const backends = await openBackends(t, config["pool-size"], wrap);
  let opened;
  try {
    opened = await Router.open(t, backends, log);
  } catch (err) {
    await Promise.allSettled(backends.map((b) => b.backend.close()));
    throw err;
  }
  if (opened.router.parts.length > 1) {
    const stranded = await strandedKeys(opened.router.parts, opened.router.routing);
    if (stranded.length > 0) {
      await opened.router.close();
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
}

/** Keys a backend holds that the table routes to another backend, grouped by prefix. */
export async function strandedKeys(parts: Part[], table: RoutingTable): Promise<Stranded[]> {
  const out = new Map<string, Stranded>();
  for (const p of parts) {
    await eachKey(p.backend, (key) => {
      const k = keyString(key);
      const to = table.route(k);
      if (to === p.name) return;
      const prefix = groupPrefix(k, table.keyPrefix);
      const id = `${p.name}\u0000${to}\u0000${prefix}`;
      const s = out.get(id) ?? { from: p.name, to, prefix, count: 0 };
      s.count++;
      out.set(id, s);
    });
  }
  return [...out.values()];
}

export function strandedMessage(stranded: Stranded[], file: string): string {
  const shown = stranded.slice(0, 5).map((s) => `${s.count} under ${s.prefix} (in ${s.from}, rules say ${s.to})`).join("; ");
  const more = stranded.length > 5 ? `; and ${stranded.length - 5} more prefixes` : "";
  return `${file}: these rules would make existing keys unreachable: ${shown}${more}. ` +
    `Move them first: strata migrate --to-config ${file} --endpoint URL (strata running with the old rules) or --from-config OLD.yaml (stopped)`;
}

/** Calls fn for every live key of a backend, in pages. */
export function eachKey(backend: Backend, fn: (key: Uint8Array) => void): Promise<void> {
  return eachPage(backend, true, async (kvs) => kvs.forEach((kv) => fn(kv.key)));
}

/** Calls fn with every live key (and value, unless keysOnly) of a backend at revision (0: now), a page at a time. */
export async function eachPage(backend: Backend, keysOnly: boolean, fn: (kvs: KeyValue[]) => Promise<void>, revision = 0n): Promise<void> {
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
function groupPrefix(key: string, keyPrefix: string): string {
  const a: KeyAnatomy | undefined = parseKey(key, keyPrefix);
  if (!a) return key.includes("/") ? key.slice(0, key.lastIndexOf("/") + 1) : key;
  return [keyPrefix.replace(/\/$/, ""), a.group, a.resource, a.sub, a.namespace].filter((s) => s !== undefined).join("/") + "/";
}

/**
 * Follows the config file: rules appended at the end apply at once (when no existing
 * key changes backend); any other change is refused with the reason, and the running
 * rules stay.
 */
export function watchTopology(config: Config, router: Router, log: Log): () => void {
  const file = config.topologyFile!;
  let busy = false;
  const check = async () => {
    if (busy) return;
    busy = true;
    try {
      let next: Topology | undefined;
      try {
        next = readTopology(readConfigFile(file), file);
        if (!next) throw new ConfigError(`${file}: backends: the file no longer names any backend`);
        validateTopology(next);
      } catch (err) {
        return log("error", "config change refused", { file, reason: (err as Error).message });
      }
      // a migration that ran in this process may already have put these rules in force
      if (sameTopology(router.topology, next)) return;
      if (router.moving) return log("error", "config change refused", { file, reason: "a migration is running; the file is read again when it changes next" });
      const reason = appendOnly(router.topology, next);
      if (reason) return log("error", "config change refused", { file, reason: `${reason}; the running rules stay. Changes other than appending rules need a migration: strata migrate --to-config ${file} --endpoint URL (live) or with strata stopped (--from-config OLD)` });
      const stranded = await strandedKeys(router.parts, RoutingTable.of(next));
      if (stranded.length > 0) return log("error", "config change refused", { file, reason: strandedMessage(stranded, file) });
      if (router.moving) return log("error", "config change refused", { file, reason: "a migration started meanwhile" });
      router.setTopology(next);
      log("info", "appended routes applied", { file, routes: next.rules.length });
    } catch (err) {
      log("error", "config change could not be checked", { file, error: String(err) });
    } finally {
      busy = false;
    }
  };
  watchFile(file, { interval: 1000 }, () => void check());
  return () => unwatchFile(file);
}

export function sameTopology(a: Topology, b: Topology): boolean {
  return JSON.stringify(summary(a)) === JSON.stringify(summary(b));
}

function summary(t: Topology) {
  return { backends: [...t.backends], default: t.default, keyPrefix: t.keyPrefix, rules: t.rules.map((r) => [r.match, r.backend]) };
}

/** undefined when next only appends rules to current; otherwise what changed */
function appendOnly(current: Topology, next: Topology): string | undefined {
  if (JSON.stringify([...current.backends]) !== JSON.stringify([...next.backends])) return "the backends changed";
  if (current.default !== next.default) return "the default backend changed";
  if (current.keyPrefix !== next.keyPrefix) return "key-prefix changed";
  if (next.rules.length < current.rules.length) return "routes were removed";
  for (let i = 0; i < current.rules.length; i++) {
    const a = current.rules[i]!, b = next.rules[i]!;
    if (JSON.stringify([a.match, a.backend]) !== JSON.stringify([b.match, b.backend])) return `${b.source} changed (only routes appended at the end apply live)`;
  }
  return undefined;
}
