// The routing part of the config file: named backends, rules, the default backend, and
// the key prefixes kube-apiservers store under (one per tenant when several share strata).
// Two shapes are read: strata's own (backends as a mapping, routes and tenants as lists)
// and HariKube's topology (backends as a list of {name, endpoint, <matcher>}). Every error
// names the file, the field and the fix, on one line.
import * as v from "valibot";
import { ConfigError } from "../util/config-error.ts";
import { parseDuration } from "../util/duration.ts";
import { normaliseEndpoint } from "./endpoint.ts";
import { type BackendSettings, DEFAULT_KEY_PREFIX, type Match, type Rule, type Topology } from "../router/contract.ts";
import type { TopologyConfigSpec } from "../keyspace/topology-configs.ts";

export const TOPOLOGY_KEYS = ["backends", "default", "routes", "tenants", "key-prefix"] as const;

const nonEmpty = (what: string) => v.pipe(v.string(`${what} must be a string`), v.minLength(1, `${what} must not be empty`));
const regex = (what: string) =>
  v.pipe(
    nonEmpty(what),
    v.check((s) => {
      try {
        new RegExp(s);
        return true;
      } catch {
        return false;
      }
    }, `${what} is not a valid regular expression`),
  );

const MatchSchema = v.pipe(
  v.strictObject({
    prefix: v.optional(nonEmpty("match.prefix")),
    key: v.optional(regex("match.key")),
    group: v.optional(nonEmpty("match.group")),
    resource: v.optional(nonEmpty("match.resource")),
    namespace: v.optional(nonEmpty("match.namespace")),
  }, (issue) => `match accepts prefix, key, group, resource and namespace (got ${issue.received})`),
  v.check((m) => Object.keys(m).length > 0, "match must set at least one of prefix, key, group, resource, namespace"),
);

const RouteSchema = v.strictObject({ match: MatchSchema, backend: nonEmpty("backend") }, "a route is { match: {...}, backend: NAME }");

const KeyPrefixSchema = v.union(
  [nonEmpty("key-prefix"), v.pipe(v.array(nonEmpty("key-prefix")), v.minLength(1, "key-prefix must name at least one prefix"))],
  "key-prefix is a prefix such as /registry/, or a list of them",
);

/** a kube-apiserver of its own (--etcd-prefix PREFIX), its keys in `backend` unless one of its routes says otherwise */
const TenantSchema = v.strictObject({
  prefix: nonEmpty("prefix"),
  backend: nonEmpty("backend"),
  routes: v.optional(v.array(RouteSchema), []),
}, "a tenant is { prefix: /NAME/registry/, backend: NAME, routes: [...] (optional) }");

const StrataSchema = v.object({
  backends: v.record(
    v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]+$/, "backend names use letters, digits, '.', '_' and '-'")),
    nonEmpty("a backend URL"),
  ),
  default: v.optional(nonEmpty("default")),
  routes: v.optional(v.array(RouteSchema), []),
  tenants: v.optional(v.array(TenantSchema), []),
  "key-prefix": v.optional(KeyPrefixSchema),
});

/** a duration as Go writes one (30s, 5m, 1h30m), or a number of seconds */
const goDuration = (what: string) =>
  v.pipe(
    v.union([v.number(), v.string()], `${what} must be a duration such as 30s or 5m`),
    v.check((d) => (typeof d === "number" ? d >= 0 : parseDuration(d) !== undefined), `${what} must be a duration such as 30s or 5m`),
  );
const count = (what: string) => v.pipe(v.number(`${what} must be a number`), v.integer(`${what} must be a whole number`), v.minValue(0, `${what} must not be negative`));

/** HariKube's per-backend fields besides the matcher; what strata does with each is in backendSettings */
const HarikubeEntry = v.looseObject({
  name: nonEmpty("name"),
  endpoint: nonEmpty("endpoint"),
  prefix: v.optional(v.strictObject({ prefix: nonEmpty("prefix.prefix") })),
  namespace: v.optional(v.strictObject({ namespace: nonEmpty("namespace.namespace"), kinds: v.optional(v.array(nonEmpty("namespace.kinds[]"))) })),
  customresource: v.optional(v.strictObject({ group: nonEmpty("customresource.group"), kind: nonEmpty("customresource.kind") })),
  regexp: v.optional(v.strictObject({ prefix: v.optional(v.string()), key: regex("regexp.key") })),
  backendTLS: v.optional(v.looseObject({
    caFile: v.optional(v.string("backendTLS.caFile must be a string")),
    certFile: v.optional(v.string("backendTLS.certFile must be a string")),
    keyFile: v.optional(v.string("backendTLS.keyFile must be a string")),
    skipVerify: v.optional(v.boolean("backendTLS.skipVerify must be true or false")),
  })),
  connectionPool: v.optional(v.looseObject({
    maxIdle: v.optional(count("connectionPool.maxIdle")),
    maxOpen: v.optional(v.pipe(count("connectionPool.maxOpen"), v.minValue(1, "connectionPool.maxOpen must be at least 1"))),
    maxLifeTime: v.optional(goDuration("connectionPool.maxLifeTime")),
    maxIdleLifeTime: v.optional(goDuration("connectionPool.maxIdleLifeTime")),
  })),
  compactInterval: v.optional(goDuration("compactInterval")),
  compactMinRetain: v.optional(count("compactMinRetain")),
  compactBatchSize: v.optional(count("compactBatchSize")),
  disableStorageLevelFiltering: v.optional(v.boolean("disableStorageLevelFiltering must be true or false")),
}, "a HariKube backend is { name, endpoint } with at most one of prefix, namespace, customresource, regexp");

type HarikubeBackend = v.InferOutput<typeof HarikubeEntry>;

const MATCHERS = ["prefix", "namespace", "customresource", "regexp"] as const;
const SETTINGS = ["backendTLS", "connectionPool", "compactInterval", "compactMinRetain", "compactBatchSize", "disableStorageLevelFiltering"] as const;
const COMPACTION = "strata compacts the whole keyspace at one revision (--auto-compaction-*)";

/**
 * The URL with the settings strata honours from one entry (TLS files and pool lifetimes
 * become the URL parameters each database's driver reads; connectionPool.maxOpen the pool
 * size), and the fields it does not, each with why. Unknown fields are named too: a typo
 * must not pass unseen.
 */
function backendSettings(b: HarikubeBackend): { url: string; settings: BackendSettings; ignored: string[] } {
  const settings: BackendSettings = {};
  const ignored: string[] = [];
  const known = new Set<string>(["name", "endpoint", ...MATCHERS, ...SETTINGS]);
  for (const k of Object.keys(b)) if (!known.has(k)) ignored.push(`${k} (unknown)`);
  const url = normaliseEndpoint(b.endpoint);
  const scheme = url.slice(0, url.indexOf("://"));
  const family = ({ postgres: "postgres", postgresql: "postgres", mysql: "mysql", mariadb: "mysql", nats: "nats", etcd: "etcd", etcds: "etcd" } as Record<string, string>)[scheme] ?? "sqlite";
  const params = new Map<string, string>();
  const not = (field: string, why: string) => ignored.push(`${field} (${why})`);

  const tls = b.backendTLS as Record<string, unknown> | undefined;
  if (tls) {
    for (const k of Object.keys(tls)) if (!["caFile", "certFile", "keyFile", "skipVerify"].includes(k)) not(`backendTLS.${k}`, "unknown");
    const { caFile, certFile, keyFile, skipVerify } = tls as { caFile?: string; certFile?: string; keyFile?: string; skipVerify?: boolean };
    const files: Record<string, [string, string, string]> = {
      postgres: ["sslrootcert", "sslcert", "sslkey"],
      mysql: ["ssl-ca", "ssl-cert", "ssl-key"],
      nats: ["ca", "cert", "key"],
      etcd: ["ca", "cert", "key"],
    };
    const names = files[family];
    if (!names) not("backendTLS", "SQLite is a file: no TLS");
    else {
      [caFile, certFile, keyFile].forEach((f, i) => f && params.set(names[i]!, f));
      if (family === "postgres") params.set("sslmode", skipVerify ? "require" : "verify-full");
      if (family === "mysql") params.set("ssl", skipVerify ? "skip-verify" : "true");
      if (family === "nats") params.set("tls", "true");
      if (skipVerify && (family === "nats" || family === "etcd")) not("backendTLS.skipVerify", `strata verifies ${family === "nats" ? "NATS" : "etcd"} servers' certificates`);
    }
  }
  const pool = b.connectionPool as Record<string, unknown> | undefined;
  if (pool) {
    const seconds = (d: unknown) => Math.ceil((typeof d === "number" ? d * 1000 : parseDuration(d as string)!) / 1000);
    const server = family === "postgres" || family === "mysql";
    for (const [k, value] of Object.entries(pool)) {
      const f = `connectionPool.${k}`;
      if (k === "maxOpen") {
        if (server) settings.poolSize = value as number;
        else not(f, "only PostgreSQL and MySQL have a pool");
      } else if (!["maxIdle", "maxLifeTime", "maxIdleLifeTime"].includes(k)) not(f, "unknown");
      else if (!server) not(f, "only PostgreSQL and MySQL have a pool");
      else if (family === "postgres" && k === "maxLifeTime") params.set("max_lifetime", String(seconds(value)));
      else if (family === "postgres" && k === "maxIdleLifeTime") params.set("idle_timeout", String(seconds(value)));
      else if (family === "mysql" && k === "maxIdle") params.set("max-idle", String(value));
      else if (family === "mysql" && k === "maxIdleLifeTime") params.set("idle-timeout", String(seconds(value)));
      else not(f, family === "postgres" ? "strata's PostgreSQL pool keeps no idle minimum" : "strata's MySQL pool has no connection lifetime");
    }
  }
  for (const f of ["compactInterval", "compactMinRetain", "compactBatchSize"] as const) if (b[f] !== undefined) not(f, COMPACTION);
  if (b.disableStorageLevelFiltering !== undefined) not("disableStorageLevelFiltering", "strata filters selected lists where the keys are stored (--selector-index)");
  // an upstream etcd speaks TLS under its own scheme
  const secured = family === "etcd" && tls && params.size > 0 ? url.replace(/^etcd:\/\//, "etcds://") : url;
  return { url: withParams(secured, params), settings, ignored };
}

/** the URL with these query parameters added, where the URL does not set them already */
function withParams(url: string, params: Map<string, string>): string {
  const added = [...params].filter(([k]) => !new RegExp(`[?&]${k.replace(/-/g, "\\-")}=`).test(url));
  if (added.length === 0) return url;
  return `${url}${url.includes("?") ? "&" : "?"}${added.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&")}`;
}

const HarikubeSchema = v.object({ backends: v.array(HarikubeEntry), "key-prefix": v.optional(KeyPrefixSchema) });

function fail(source: string, issues: v.BaseIssue<unknown>[]): never {
  const issue = issues[0]!;
  const path = issue.path?.map((p) => (typeof p.key === "number" ? `[${p.key}]` : `.${String(p.key)}`)).join("").replace(/^\./, "");
  // a required field left out: say so before what the object takes
  const missing = issue.kind === "schema" && issue.received === "undefined" && path ? "missing; " : "";
  throw new ConfigError(`${source}: ${path ? `${path}: ` : ""}${missing}${issue.message}`);
}

/** Reads the routing part of a parsed config document; undefined when it has none. */
export function readTopology(doc: Record<string, unknown>, source: string): Topology | undefined {
  if (doc.backends === undefined) {
    for (const k of ["default", "routes", "tenants"]) {
      if (doc[k] !== undefined) throw new ConfigError(`${source}: ${k}: needs backends: a mapping of names to URLs`);
    }
    return undefined;
  }
  return Array.isArray(doc.backends) ? readHarikube(doc, source) : readStrata(doc, source);
}

function readStrata(doc: Record<string, unknown>, source: string): Topology {
  const r = v.safeParse(StrataSchema, { backends: doc.backends, default: doc.default, routes: doc.routes, tenants: doc.tenants, "key-prefix": doc["key-prefix"] });
  if (!r.success) fail(source, r.issues);
  const backends = new Map<string, string>();
  for (const [name, url] of Object.entries(r.output.backends)) backends.set(name, normaliseEndpoint(url));
  const names = [...backends.keys()];
  if (names.length === 0) throw new ConfigError(`${source}: backends: name at least one backend, such as main: sqlite://./strata.db`);
  const def = r.output.default ?? (names.length === 1 ? names[0]! : undefined);
  if (def === undefined) throw new ConfigError(`${source}: default: say which backend holds keys no route matches (one of ${names.join(", ")})`);
  if (!backends.has(def)) throw new ConfigError(`${source}: default: unknown backend "${def}"; defined backends: ${names.join(", ")}`);
  const known = (backend: string, where: string) => {
    if (!backends.has(backend)) throw new ConfigError(`${where}: unknown backend "${backend}"; defined backends: ${names.join(", ")}`);
    return backend;
  };
  // a tenant's rules come first: its keys stay in its databases whatever the routes below say
  const rules: Rule[] = [];
  const tenantPrefixes: string[] = [];
  r.output.tenants.forEach((tenant, i) => {
    const where = `${source}: tenants[${i}]`;
    const prefix = withSlash(tenant.prefix);
    tenantPrefixes.push(prefix);
    tenant.routes.forEach((route, j) => {
      const at = `${where}.routes[${j}]`;
      if (route.match.prefix !== undefined && !route.match.prefix.startsWith(prefix)) {
        throw new ConfigError(`${at}.match.prefix: "${route.match.prefix}" is outside the tenant's prefix ${prefix}; leave it out, or start it with ${prefix}`);
      }
      rules.push({ match: { ...route.match, prefix: route.match.prefix ?? prefix } as Match, backend: known(route.backend, `${at}.backend`), source: at });
    });
    rules.push({ match: { prefix }, backend: known(tenant.backend, `${where}.backend`), source: where });
  });
  r.output.routes.forEach((route, i) => {
    const where = `${source}: routes[${i}]`;
    rules.push({ match: route.match as Match, backend: known(route.backend, `${where}.backend`), source: where });
  });
  const keyPrefixes = prefixList(r.output["key-prefix"]);
  for (const p of tenantPrefixes) if (!keyPrefixes.includes(p)) keyPrefixes.push(p);
  return finish({ backends, default: def, rules, keyPrefixes, source });
}

/** kube-apiserver's --etcd-prefix /tenant-a/registry stores under /tenant-a/registry/ */
function withSlash(prefix: string): string {
  return prefix.endsWith("/") ? prefix : `${prefix}/`;
}

function prefixList(keyPrefix: string | string[] | undefined): string[] {
  if (keyPrefix === undefined) return [DEFAULT_KEY_PREFIX];
  return [...new Set((typeof keyPrefix === "string" ? [keyPrefix] : keyPrefix).map(withSlash))];
}

function readHarikube(doc: Record<string, unknown>, source: string): Topology {
  const r = v.safeParse(HarikubeSchema, { backends: doc.backends, "key-prefix": doc["key-prefix"] });
  if (!r.success) fail(source, r.issues);
  const read = harikubeEntries(r.output.backends, (i) => `${source}: backends[${i}]`);
  const def = read.defaults[0];
  if (def === undefined) {
    throw new ConfigError(`${source}: backends: list one backend without a matcher; it holds the keys no matcher takes`);
  }
  const other = read.defaults.find((d) => d.name !== def.name);
  if (other) throw new ConfigError(`${other.where}: "${other.name}" has no matcher but "${def.name}" is already the default backend; give one of them a matcher`);
  const { backends, settings, rules, ignored } = read;
  return finish({ backends, settings, rules, ignored, default: def.name, keyPrefixes: prefixList(r.output["key-prefix"]), source });
}

/** HariKube's backend entries: the backends, their settings, the rules of those with a matcher, those without one */
function harikubeEntries(entries: HarikubeBackend[], where: (i: number) => string) {
  const backends = new Map<string, string>();
  const settings = new Map<string, BackendSettings>();
  const rules: Rule[] = [];
  const defaults: Array<{ name: string; where: string }> = [];
  const ignored: string[] = [];
  entries.forEach((b, i) => {
    const at = where(i);
    const s = backendSettings(b);
    if (backends.has(b.name) && backends.get(b.name) !== s.url) {
      throw new ConfigError(`${at}.name: backend "${b.name}" is listed twice with different endpoints`);
    }
    backends.set(b.name, s.url);
    if (Object.keys(s.settings).length > 0) settings.set(b.name, { ...settings.get(b.name), ...s.settings });
    if (s.ignored.length > 0) ignored.push(`${at.replace(/^.*: /, "")} (${b.name}): ${s.ignored.join(", ")}`);
    const matchers = MATCHERS.filter((k) => b[k] !== undefined);
    if (matchers.length > 1) throw new ConfigError(`${at}: has ${matchers.join(" and ")}; a HariKube backend has at most one matcher`);
    const matches: Match[] = [];
    if (b.prefix) matches.push({ prefix: b.prefix.prefix });
    // a namespace's keys, or only those of the kinds listed: one rule per kind
    if (b.namespace) {
      const ns = b.namespace.namespace;
      if (b.namespace.kinds?.length) matches.push(...b.namespace.kinds.map((k) => ({ namespace: ns, resource: resourceOf(k) })));
      else matches.push({ namespace: ns });
    }
    if (b.customresource) matches.push({ group: groupOf(b.customresource.group), resource: resourceOf(b.customresource.kind) });
    if (b.regexp) matches.push({ ...(b.regexp.prefix ? { prefix: b.regexp.prefix } : {}), key: b.regexp.key });
    for (const match of matches) rules.push({ match, backend: b.name, source: at });
    if (matches.length === 0) defaults.push({ name: b.name, where: at });
  });
  return { backends, settings, rules, defaults, ignored: ignored.length > 0 ? ignored.join("; ") : undefined };
}

/** HariKube's examples write the group with its version (product.example.com/v1): keys carry the group alone */
function groupOf(group: string): string {
  return group.replace(/\/[^/]*$/, "");
}

/** HariKube's examples name the plural (kind: shirts); a Kind (Shirt) is made plural */
function resourceOf(kind: string): string {
  return kind === kind.toLowerCase() ? kind : pluralOf(kind);
}

const TopologyConfigSchema = v.object({
  spec: v.object({
    targetSecret: v.optional(v.string("targetSecret must be a string")),
    backends: v.pipe(v.array(HarikubeEntry, "backends must be a list of { name, endpoint, <matcher> }"), v.minLength(1, "backends must list at least one backend")),
    migrate: v.optional(v.boolean("migrate must be true or false"), false),
  }, "spec must be an object with backends"),
}, "a TopologyConfig is { spec: { backends: [...] } }");

/**
 * Reads a TopologyConfig object (`source` names it: "TopologyConfig NS/NAME"): every entry
 * needs a matcher, as the default backend is the config file's.
 */
export function readTopologyConfig(object: unknown, source: string): TopologyConfigSpec {
  const r = v.safeParse(TopologyConfigSchema, object);
  if (!r.success) fail(source, r.issues);
  const read = harikubeEntries(r.output.spec.backends, (i) => `${source}: spec.backends[${i}]`);
  const d = read.defaults[0];
  if (d) throw new ConfigError(`${d.where}: "${d.name}" has no matcher (prefix, namespace, customresource or regexp); the default backend is set where strata's config is, not by a TopologyConfig`);
  rulesAsKeyBytes(read.rules);
  return { backends: read.backends, settings: read.settings, rules: read.rules, migrate: r.output.spec.migrate, ignored: read.ignored };
}

/**
 * A custom resource's storage segment is its plural, lower case. HariKube names the
 * kind; its plural is derived as the CRD tooling does by default (Shirt → shirts,
 * Policy → policies, Class → classes). A CRD with an irregular plural needs a strata
 * route on `resource:` instead.
 */
export function pluralOf(kind: string): string {
  const k = kind.toLowerCase();
  if (/(s|x|z|ch|sh)$/.test(k)) return `${k}es`;
  if (/[^aeiou]y$/.test(k)) return `${k.slice(0, -1)}ies`;
  return `${k}s`;
}

/** Rule strings are compared with keys byte for byte: keys are read as latin1. */
function asKeyBytes(s: string): string {
  return Buffer.from(s, "utf8").toString("latin1");
}

function finish(t: Topology): Topology {
  t.keyPrefixes = t.keyPrefixes.map(asKeyBytes);
  // a key has one Kubernetes prefix, or rules could read it two ways
  for (const a of t.keyPrefixes) {
    const b = t.keyPrefixes.find((p) => p !== a && p.startsWith(a));
    if (b !== undefined) {
      throw new ConfigError(`${t.source}: key prefixes ${a} and ${b} contain one another; give each kube-apiserver a prefix outside the others' (--etcd-prefix /tenant-a/registry), or list only the ones in use in key-prefix`);
    }
  }
  rulesAsKeyBytes(t.rules);
  return t;
}

function rulesAsKeyBytes(rules: Rule[]): void {
  for (const r of rules) {
    const m = r.match;
    for (const f of ["prefix", "group", "resource", "namespace"] as const) if (m[f] !== undefined) m[f] = asKeyBytes(m[f]!);
  }
}

/** The topology of a plain `--backend URL`: one backend, no rules. */
export function singleBackend(url: string, source: string): Topology {
  return { backends: new Map([["default", url]]), default: "default", rules: [], keyPrefixes: [DEFAULT_KEY_PREFIX], source };
}
