// Topologies written elsewhere than the config file strata started with — a URL's body,
// a Secret's files, the config file read again, the Admin service's Migrate — read as a
// config file is. What the router can serve is checked where they are used.
import type { TopologyDocuments } from "../keyspace/topology-sources.ts";
import type { Topology } from "../router/contract.ts";
import { ConfigError } from "../util/config-error.ts";
import { parseConfigText, readConfigFile } from "./config.ts";
import { readTopology, TOPOLOGY_KEYS } from "./topology.ts";

/** A topology document's text, read as a config file named `source` is. */
function topologyOf(text: string, source: string): Topology {
  const doc = parseConfigText(text, source);
  const t = readTopology(doc, source);
  if (!t) throw new ConfigError(`${source}: backends: names no backends to route to`);
  return withOthers(t, Object.keys(doc));
}

/** names the document's settings other than routing, which a fetched topology does not set */
function withOthers(t: Topology, keys: string[]): Topology {
  const others = keys.filter((k) => !(TOPOLOGY_KEYS as readonly string[]).includes(k));
  if (others.length === 0) return t;
  const line = `${others.join(", ")} (settings come from flags, the environment or a config file, not a fetched topology)`;
  return { ...t, ignored: t.ignored ? `${t.ignored}; ${line}` : line };
}

/**
 * A Secret's files, in name order, as one topology: HariKube's lists of backends are
 * joined; strata's own format must come in one file.
 */
function topologyOfSecret(files: Map<string, Uint8Array>, source: string): Topology {
  const names = [...files.keys()].sort();
  if (names.length === 0) throw new ConfigError(`${source}: the Secret has no data`);
  if (names.length === 1) return topologyOf(Buffer.from(files.get(names[0]!)!).toString("utf8"), `${source}/${names[0]}`);
  const backends: unknown[] = [];
  let keyPrefix: unknown;
  const keys: string[] = [];
  for (const name of names) {
    const doc = parseConfigText(Buffer.from(files.get(name)!).toString("utf8"), name);
    keys.push(...Object.keys(doc));
    if (!Array.isArray(doc.backends)) {
      throw new ConfigError(`${source}/${name}: backends: a Secret of several files holds HariKube's lists of backends (strata's own format goes in one file)`);
    }
    backends.push(...doc.backends);
    keyPrefix ??= doc["key-prefix"];
  }
  const t = readTopology({ backends, ...(keyPrefix !== undefined && { "key-prefix": keyPrefix }) }, source)!;
  return withOthers(t, [...new Set(keys)]);
}

/** The config file read again while strata serves. */
function topologyOfFile(file: string): Topology {
  const t = readTopology(readConfigFile(file), file);
  if (!t) throw new ConfigError(`${file}: backends: the file no longer names any backend`);
  return t;
}

export const topologyDocuments: TopologyDocuments = { text: topologyOf, secret: topologyOfSecret, file: topologyOfFile };

/** The topology the Admin service's Migrate is sent (`strata migrate --endpoint`), named `source`. */
export function migrationTopology(text: string, source: string): Topology {
  const t = readTopology(parseConfigText(text, source), source);
  if (!t) throw new ConfigError(`${source}: backends: the file names no backends to route to`);
  return t;
}
