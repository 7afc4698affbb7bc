// Checks a topology before anything is opened: backends it cannot serve, rules that can
// never match, rules an earlier rule shadows, rules that split a resource when an
// upstream etcd is among the backends. Each problem is one line naming the file, the
// field and the fix.
import { ConfigError } from "../util/config-error.ts";
import { describe, type Match, type Rule, type Topology } from "./contract.ts";
import { redact } from "../backends/open.ts";
import { isUpstreamUrl, UPSTREAM_SCHEMES } from "../backends/etcd/scheme.ts";
import { ENGINE_SCHEMES } from "../backends/sql/engine-profiles.ts";
import { prefixOf } from "./kubernetes-key.ts";
import { CompiledRule, globToRegExp } from "./rules.ts";

const SCHEMES = ["sqlite://", "postgres://", "postgresql://", "mysql://", "mariadb://", "nats://", ...ENGINE_SCHEMES.map((s) => `${s}://`), ...UPSTREAM_SCHEMES];

export function validateTopology(t: Topology): void {
  for (const [name, url] of t.backends) {
    if (!SCHEMES.some((s) => url.startsWith(s))) {
      throw new ConfigError(`${t.source}: backends.${name}: unsupported URL ${redact(url)}; use one of ${SCHEMES.join(", ")}`);
    }
  }
  const upstream = [...t.backends].find(([, url]) => isUpstreamUrl(url))?.[0];
  if (upstream !== undefined) {
    for (const r of t.rules) {
      const split = splitsResources(r, t.keyPrefixes);
      if (split) {
        throw new ConfigError(
          `${r.source}: ${split}: with an upstream etcd among the backends (${upstream}) every route must take whole resources, ` +
            `because etcd numbers its own revisions and a list of one resource must stay in one backend; ` +
            `match on resource (and group) only, or a prefix such as ${t.keyPrefixes[0]}pods/ or ${t.keyPrefixes[0]}example.com/widgets/`,
        );
      }
    }
  }
  const rules = t.rules.map((r) => new CompiledRule(r));
  rules.forEach((r, i) => {
    const never = neverMatches(r.rule.match, r, t.keyPrefixes);
    if (never) throw new ConfigError(`${r.rule.source}: can never match: ${never}`);
    const earlier = rules.slice(0, i).find((e) => shadows(e, r, t.keyPrefixes));
    if (earlier) {
      throw new ConfigError(
        `${r.rule.source}: can never match: ${earlier.rule.source.replace(`${t.source}: `, "")} (${describe(earlier.rule.match)}) comes first and takes every key it would; move it above or remove it`,
      );
    }
  });
}

/** The field (and value) by which a rule takes part of a resource; undefined when it takes whole resources. */
function splitsResources(r: Rule, keyPrefixes: readonly string[]): string | undefined {
  const m = r.match;
  if (m.namespace !== undefined) return `match.namespace "${m.namespace}"`;
  if (m.key !== undefined) return `match.key "${m.key}"`;
  if (m.prefix !== undefined && !isResourcePrefix(m.prefix, keyPrefixes)) return `match.prefix "${m.prefix}"`;
  return undefined;
}

/** KEYPREFIX[group/][resource/]: the whole of some resources (a tenant's whole prefix too) */
function isResourcePrefix(p: string, keyPrefixes: readonly string[]): boolean {
  const keyPrefix = prefixOf(p, keyPrefixes);
  if (keyPrefix === undefined) return false;
  if (p === keyPrefix) return true;
  if (!p.endsWith("/")) return false;
  const segs = p.slice(keyPrefix.length, -1).split("/");
  if (segs.some((s) => s === "")) return false;
  // built-in resources have no dot; a custom resource's key starts with its group
  return segs.length === 1 || (segs.length === 2 && segs[0]!.includes(".") && !segs[1]!.includes("."));
}

function neverMatches(m: Match, r: CompiledRule, keyPrefixes: readonly string[]): string | undefined {
  if (m.group !== undefined && !m.group.includes(".")) {
    return `group "${m.group}": built-in resources are stored without their API group (/registry/deployments/...); match on resource instead`;
  }
  if (m.prefix !== undefined && r.coverage(m.prefix, keyPrefixes) === "none") {
    return `prefix ${m.prefix} holds no key with ${describe({ ...m, prefix: undefined })}; fix the prefix or drop the other fields`;
  }
  return undefined;
}

/** Whether every key `later` matches is matched by `earlier` (checked field by field). */
function shadows(earlier: CompiledRule, later: CompiledRule, keyPrefixes: readonly string[]): boolean {
  const e = earlier.rule.match, l = later.rule.match;
  // a prefix the later rule is confined to, which the earlier one covers entirely
  if (l.prefix !== undefined && earlier.coverage(l.prefix, keyPrefixes) === "all") return true;
  if (e.prefix !== undefined && !(l.prefix !== undefined && l.prefix.startsWith(e.prefix))) return false;
  if (e.key !== undefined && e.key !== l.key) return false;
  if (e.group !== undefined && e.group !== l.group) return false;
  if (e.resource !== undefined && e.resource !== l.resource) return false;
  if (e.namespace !== undefined) {
    if (l.namespace === undefined) return false;
    const literal = !/[*?]/.test(l.namespace);
    if (!(l.namespace === e.namespace || (literal && globToRegExp(e.namespace).test(l.namespace)))) return false;
  }
  return true;
}
