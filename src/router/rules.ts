// Routing rules: which backend a key lives in. A rule matches when every field it sets
// matches (key prefix, key regex, API group, resource, namespace glob); the first rule
// that matches wins and unmatched keys go to the default backend. Group, resource and
// namespace are read under whichever configured key prefix a key has, so one rule on
// events matches every tenant's events, and a rule with a tenant's prefix and a resource
// matches that resource of that tenant only.
import type { Rule, Topology } from "./contract.ts";
import { type Known, type KeyPrefixes, parseKey, parsePrefix } from "./kubernetes-key.ts";

/** all: every key in the set matches; none: no key does; some: it depends on the key */
export type Coverage = "all" | "some" | "none";

export class CompiledRule {
  readonly regex: RegExp | undefined;
  readonly namespace: RegExp | undefined;

  /**
   * An anchored regex that looks at nothing after what it consumes (no `$`, lookaround or
   * word boundary): once it matches a string it matches every string beginning with it.
   */
  private readonly prefixClosed: boolean;

  constructor(readonly rule: Rule) {
    this.regex = rule.match.key !== undefined ? new RegExp(rule.match.key) : undefined;
    const k = rule.match.key;
    this.prefixClosed = k !== undefined && k.startsWith("^") && !/\$|\(\?[=!<]|\\[bB]|\|/.test(k);
    this.namespace = rule.match.namespace !== undefined ? globToRegExp(rule.match.namespace) : undefined;
  }

  get backend(): string {
    return this.rule.backend;
  }

  matches(key: string, keyPrefixes: KeyPrefixes): boolean {
    const m = this.rule.match;
    if (m.prefix !== undefined && !key.startsWith(m.prefix)) return false;
    if (this.regex && !this.regex.test(key)) return false;
    if (m.group === undefined && m.resource === undefined && m.namespace === undefined) return true;
    const a = parseKey(key, keyPrefixes);
    if (!a) return false;
    if (m.group !== undefined && a.group !== m.group) return false;
    if (m.resource !== undefined && a.resource !== m.resource) return false;
    if (this.namespace && (a.namespace === undefined || !this.namespace.test(a.namespace))) return false;
    return true;
  }

  /** How the rule covers the keys starting with p. */
  coverage(p: string, keyPrefixes: readonly string[]): Coverage {
    const m = this.rule.match;
    const parts: Coverage[] = [];
    if (m.prefix !== undefined) {
      parts.push(p.startsWith(m.prefix) ? "all" : m.prefix.startsWith(p) ? "some" : "none");
    }
    if (this.regex) {
      // an anchored regex's literal start rules out prefixes that disagree with it
      const lit = /^\^([^.[\]()*+?{}|\\$^]*)/.exec(m.key!)?.[1];
      if (lit !== undefined && !p.startsWith(lit) && !lit.startsWith(p)) parts.push("none");
      else parts.push(this.prefixClosed && this.regex.test(p) ? "all" : "some");
    }
    if (m.group !== undefined || m.resource !== undefined || m.namespace !== undefined) {
      const a = parsePrefix(p, keyPrefixes);
      if (!a.underPrefix) {
        // keys outside the Kubernetes prefixes have no anatomy; a longer p may still reach into one
        parts.push(keyPrefixes.some((k) => k.startsWith(p)) ? "some" : "none");
      } else {
        if (m.group !== undefined) parts.push(fieldCoverage(a.group, (s) => s === m.group, m.group));
        if (m.resource !== undefined) parts.push(fieldCoverage(a.resource, (s) => s === m.resource, m.resource));
        if (this.namespace) {
          const literal = m.namespace!.split(/[*?]/)[0]!;
          parts.push(fieldCoverage(a.namespace, (s) => this.namespace!.test(s), literal, true));
        }
      }
    }
    if (parts.includes("none")) return "none";
    return parts.every((c) => c === "all") ? "all" : "some";
  }
}

function fieldCoverage(k: Known | undefined, test: (s: string) => boolean, literalPrefix: string, glob = false): Coverage {
  if (k === undefined) return "some";
  if (k === null) return "none";
  if ("exact" in k) return test(k.exact) ? "all" : "none";
  // only the start is known: it must agree with the rule's literal beginning
  const q = k.partial;
  if (glob) return q.startsWith(literalPrefix) || literalPrefix.startsWith(q) ? "some" : "none";
  return literalPrefix.startsWith(q) ? "some" : "none";
}

export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

/** The effective routing: rules in order and the default backend. */
export class RoutingTable {
  readonly rules: CompiledRule[];

  constructor(rules: Rule[], readonly defaultBackend: string, readonly keyPrefixes: readonly string[]) {
    this.rules = rules.map((r) => new CompiledRule(r));
  }

  static of(t: Topology): RoutingTable {
    return new RoutingTable(t.rules, t.default, t.keyPrefixes);
  }

  /** the backend a key lives in, and the rule that sent it there (undefined: the default) */
  explain(key: string): { backend: string; rule?: CompiledRule; index?: number } {
    for (let i = 0; i < this.rules.length; i++) {
      const r = this.rules[i]!;
      if (r.matches(key, this.keyPrefixes)) return { backend: r.backend, rule: r, index: i };
    }
    return { backend: this.defaultBackend };
  }

  route(key: string): string {
    return this.explain(key).backend;
  }

  /** The backends that may hold keys starting with p, in rule order then the default. */
  backendsFor(p: string): string[] {
    const out = new Set<string>();
    for (const r of this.rules) {
      const c = r.coverage(p, this.keyPrefixes);
      if (c === "none") continue;
      out.add(r.backend);
      if (c === "all") return [...out];
    }
    out.add(this.defaultBackend);
    return [...out];
  }
}
