// `strata route explain KEY` and `strata route list`: what the routing does, without
// opening any database.
import { redact } from "../backends/open.ts";
import { isUpstreamUrl } from "../backends/etcd/scheme.ts";
import { ConfigError } from "../config/config.ts";
import { loadCheckedConfig } from "./config.ts";
import { parseKey } from "../router/kubernetes-key.ts";
import { RoutingTable } from "../router/rules.ts";
import { describe } from "../router/contract.ts";

const USAGE = "usage: strata route explain KEY [--config FILE] | strata route list [--config FILE]";

/** Runs the command; returns the exit code. */
export async function routeCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const positional = rest.filter((a, i) => !a.startsWith("--") && !(i > 0 && rest[i - 1]!.startsWith("--") && !rest[i - 1]!.includes("=")));
  const flags = rest.filter((a) => !positional.includes(a));
  if (sub !== "explain" && sub !== "list") {
    console.error(USAGE);
    return 2;
  }
  let config;
  try {
    config = loadCheckedConfig(flags, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`strata: configuration error: ${err.message}`);
      return 2;
    }
    throw err;
  }
  const t = config.topology;
  const table = RoutingTable.of(t);
  if (sub === "list") {
    console.log(`key ${t.keyPrefixes.length > 1 ? "prefixes" : "prefix"}: ${t.keyPrefixes.join(", ")}`);
    console.log("backends:");
    for (const [name, url] of t.backends) {
      console.log(`  ${name}${name === t.default ? " (default)" : ""}: ${redact(url)}${isUpstreamUrl(url) ? " (upstream etcd, its own revisions)" : ""}`);
    }
    console.log("routes, first match wins:");
    if (t.rules.length === 0) console.log("  (none: every key goes to the default backend)");
    t.rules.forEach((r, i) => console.log(`  ${i + 1}. ${describe(r.match)} -> ${r.backend}`));
    console.log(`  otherwise -> ${t.default}`);
    return 0;
  }
  if (positional.length !== 1) {
    console.error(USAGE);
    return 2;
  }
  const key = Buffer.from(positional[0]!, "utf8").toString("latin1");
  const { backend, rule, index } = table.explain(key);
  const a = parseKey(key, t.keyPrefixes);
  const anatomy = a
    ? [a.group ? `group ${a.group}` : "core/built-in (no group in key)", `resource ${a.resource}${a.sub ? `/${a.sub}` : ""}`, a.namespace ? `namespace ${a.namespace}` : "cluster-scoped", `name ${a.name}`].join(", ")
    : `not a Kubernetes object key (${t.keyPrefixes.length > 1 ? "prefixes" : "prefix"} ${t.keyPrefixes.join(", ")})`;
  console.log(`key: ${positional[0]}`);
  console.log(`parsed: ${anatomy}${a && t.keyPrefixes.length > 1 ? ` (under ${a.prefix})` : ""}`);
  console.log(rule ? `rule: ${index! + 1}. ${describe(rule.rule.match)} (${rule.rule.source})` : "rule: none matched; the default backend");
  console.log(`backend: ${backend} (${redact(t.backends.get(backend)!)})`);
  return 0;
}
