// strata's configuration: one table of settings, each settable in the config file
// (YAML or JSON, same names as the flags), by environment variable, or by flag; flags
// win over the environment, which wins over the file. Validated with valibot, and
// every error names its source, its setting and what is expected.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import * as v from "valibot";
import YAML from "yaml";
import { ConfigError } from "../util/config-error.ts";
import { ETCD_SAME_NAME, etcdEnv, ignoredEtcdEnv, logLevelOf, withoutIgnored } from "./etcd-flags.ts";
import { parseDuration } from "../util/duration.ts";
import { foreignFlagHint, foreignSettingHint } from "./foreign-flags.ts";
import { normaliseEndpoint } from "./endpoint.ts";
import { LOG_LEVELS } from "../util/log.ts";
import { tlsSettings } from "./tls-settings.ts";
import type { TlsSettings } from "../api/tls.ts";
import { readTopology, singleBackend, TOPOLOGY_KEYS } from "./topology.ts";
import type { Topology } from "../router/contract.ts";
import type { Retention } from "../keyspace/compactor.ts";
import type { RemoteTopology } from "../keyspace/topology-sources.ts";

const duration = (what: string) =>
  v.pipe(
    v.string(),
    v.check((s) => parseDuration(s) !== undefined, `${what} must be a duration such as 500ms, 30s, 10m or 1h`),
    v.transform((s) => parseDuration(s)!),
  );
const positiveInt = (what: string) =>
  v.pipe(
    v.union([v.number(), v.string()]),
    v.transform(Number),
    v.check((n) => Number.isInteger(n) && n > 0, `${what} must be a positive whole number`),
  );
const yesNo = (what: string) =>
  v.pipe(
    v.union([v.boolean(), v.string()]),
    v.transform((x) => String(x).toLowerCase()),
    v.check((s) => s === "true" || s === "false", `${what} must be true or false`),
    v.transform((s) => s === "true"),
  );
/** a comma-separated list of URLs of one of the schemes, all of the same scheme */
const urlList = (what: string, schemes: string[]) =>
  v.pipe(
    v.string(),
    v.check((s) => splitList(s).length > 0 && splitList(s).every((u) => schemes.some((p) => u.startsWith(`${p}://`))),
      `${what} must be a URL starting with ${schemes.map((p) => `${p}://`).join(" or ")}, or several separated by commas`),
    v.check((s) => splitList(s).every((u) => URL.canParse(u) && new URL(u).pathname.replace(/^\/$/, "") === ""),
      `${what} must name a host (and port) and no path, such as http://127.0.0.1:2379`),
    v.check((s) => new Set(splitList(s).map((u) => u.split(":")[0])).size === 1,
      `${what}: strata serves one scheme on all its client URLs; give only http:// or only https:// URLs`),
  );
const url = (what: string, schemes: string[]) =>
  v.pipe(
    v.string(),
    v.check((s) => schemes.some((p) => s.startsWith(`${p}://`)), `${what} must be a URL starting with ${schemes.map((p) => `${p}://`).join(" or ")}`),
  );

export const SETTINGS = {
  listen: {
    env: "STRATA_LISTEN",
    etcd: "listen-client-urls",
    default: "http://127.0.0.1:2379",
    help: "URL to serve the etcd v3 gRPC API on: http:// (HTTP/2 cleartext) or https:// (TLS, with --cert-file and --key-file); several, comma separated, serve the same on each (etcd's --listen-client-urls); a localhost URL listens on 127.0.0.1, as etcd's does",
    schema: urlList("listen", ["http", "https"]),
  },
  "advertise-client-urls": {
    env: "STRATA_ADVERTISE_CLIENT_URLS",
    default: "",
    help: "client URLs reported by MemberList, comma separated (default: the listen URL)",
    schema: v.string(),
  },
  "data-dir": {
    env: "STRATA_DATA_DIR",
    default: "",
    help: "as etcd's --data-dir: keep the data in an embedded SQLite database, DIR/strata.db, creating DIR (mode 0700) if missing; instead of --backend",
    schema: v.string(),
  },
  backend: {
    env: "STRATA_BACKEND",
    default: "sqlite://./strata.db",
    help: "where the data lives: sqlite://PATH (relative) or sqlite:///ABSOLUTE/PATH, postgres://USER:PASS@HOST:5432/DB, mysql://USER:PASS@HOST:3306/DB, cockroachdb://, yugabytedb:// (as postgres://) or tidb:// (as mysql://; docs/distributed-sql.md), nats://HOST:4222?bucket=NAME, or an upstream etcd: etcd://HOST:2379 (etcds:// for TLS)",
    schema: url("backend", ["sqlite", "postgres", "postgresql", "mysql", "mariadb", "nats", "etcd", "etcds", "cockroachdb", "yugabytedb", "tidb"]),
  },
  "etcd-cafile": {
    env: "STRATA_ETCD_CAFILE",
    default: "",
    help: "CA certificate that signs an etcds:// upstream's server certificate (when its URL has no ?ca=)",
    schema: v.string(),
  },
  "etcd-certfile": {
    env: "STRATA_ETCD_CERTFILE",
    default: "",
    help: "client certificate strata presents to an etcds:// upstream (when its URL has no ?cert=)",
    schema: v.string(),
  },
  "etcd-keyfile": {
    env: "STRATA_ETCD_KEYFILE",
    default: "",
    help: "key of that client certificate (when the URL has no ?key=)",
    schema: v.string(),
  },
  "pool-size": {
    env: "STRATA_POOL_SIZE",
    default: "10",
    help: "connections strata keeps open to a database server (PostgreSQL, MySQL)",
    schema: positiveInt("pool-size"),
  },
  name: {
    env: "STRATA_NAME",
    default: "strata",
    help: "member name reported by MemberList",
    schema: v.pipe(v.string(), v.minLength(1, "name must not be empty")),
  },
  "auto-compaction-mode": {
    env: "STRATA_AUTO_COMPACTION_MODE",
    default: "periodic",
    help: "periodic: keep history for a duration; revision: keep a number of revisions",
    schema: v.picklist(["periodic", "revision"], "auto-compaction-mode must be periodic or revision"),
  },
  "auto-compaction-retention": {
    env: "STRATA_AUTO_COMPACTION_RETENTION",
    default: "1h",
    help: "history to keep: a duration (periodic; a bare number means hours) or a revision count; 0 turns it off",
    schema: v.union([v.string(), v.number()]),
  },
  "selector-index": {
    env: "STRATA_SELECTOR_INDEX",
    default: "false",
    flag: "boolean",
    help: "index every write's labels and selectable fields in the SQL databases, so label/field-selected ranges (HariKube's apiserver sends them) are answered from the index; costs write throughput (a stock kube-apiserver never sends selectors)",
    schema: yesNo("selector-index"),
  },
  "auto-gc": {
    env: "STRATA_AUTO_GC",
    default: "false",
    flag: "boolean",
    help: "storage-side garbage collection (HariKube's Auto GC): deleting an owner labelled skip-controller-manager-metadata-caching=true deletes or orphans its dependents in the same transaction, as Kubernetes' garbage collector would (see docs/auto-gc.md); keeps the selector index in the SQL databases",
    schema: yesNo("auto-gc"),
  },
  "topology-configs": {
    env: "STRATA_TOPOLOGY_CONFIGS",
    default: "true",
    flag: "boolean",
    help: "follow HariKube's TopologyConfig objects in the keyspace (KEYPREFIX harikube.info/topologyconfigs/): their routes apply after the config's, and each gets its outcome in status (docs/topology-config.md)",
    schema: yesNo("topology-configs"),
  },
  "topology-poll-interval": {
    env: "STRATA_TOPOLOGY_POLL_INTERVAL",
    default: "1m",
    help: "how often a topology named by an http(s):// URL (--config, TOPOLOGY_CONFIG) is fetched again",
    schema: v.pipe(duration("topology-poll-interval"), v.check((ms) => ms > 0, "topology-poll-interval must be above 0s")),
  },
  "watch-progress-notify-interval": {
    env: "STRATA_WATCH_PROGRESS_NOTIFY_INTERVAL",
    etcd: "experimental-watch-progress-notify-interval",
    default: "10m",
    help: "how often idle watchers that asked for progress notifications get one",
    schema: duration("watch-progress-notify-interval"),
  },
  "max-txn-ops": {
    env: "STRATA_MAX_TXN_OPS",
    default: "128",
    help: "most operations in one txn, as etcd's --max-txn-ops",
    schema: positiveInt("max-txn-ops"),
  },
  "max-request-bytes": {
    env: "STRATA_MAX_REQUEST_BYTES",
    default: "1572864",
    help: "largest write request in bytes, as etcd's --max-request-bytes",
    schema: positiveInt("max-request-bytes"),
  },
  "request-timeout": {
    env: "STRATA_REQUEST_TIMEOUT",
    default: "7s",
    help: "a request on a database server (or upstream etcd) that stopped answering, its health probe included, is answered Unavailable after this; a busy database is waited for, and an embedded SQLite is never taken for away. The default is etcd's own request timeout (5s + 2 x its 1s election timeout)",
    schema: v.pipe(duration("request-timeout"), v.check((ms) => ms > 0, "request-timeout must be longer than 0")),
  },
  "max-waiting-requests": {
    env: "STRATA_MAX_WAITING_REQUESTS",
    default: "5000",
    help: "client reads, and client writes, that may wait on one database; more are refused at once, before any work, with etcd's ResourceExhausted \"etcdserver: too many requests\"",
    schema: positiveInt("max-waiting-requests"),
  },
  "response-budget-bytes": {
    env: "STRATA_RESPONSE_BUDGET_BYTES",
    default: "67108864",
    help: "bytes of large read responses (lists, RangeStream chunks) read and not yet sent to their clients, at most; further large reads wait for room (see docs/http2-limits.md)",
    schema: positiveInt("response-budget-bytes"),
  },
  "stalled-stream-timeout": {
    env: "STRATA_STALLED_STREAM_TIMEOUT",
    default: "60s",
    help: "a stream whose response has not moved for this long (its client gives no window or does not read) is reset and its bytes dropped; a large read waits at most this long for room before ResourceExhausted; 0s: never reset, reads wait as long as it takes",
    schema: duration("stalled-stream-timeout"),
  },
  "idle-connection-timeout": {
    env: "STRATA_IDLE_CONNECTION_TIMEOUT",
    default: "5m",
    help: "a client connection with no stream open for this long gets GOAWAY and is closed (watches keep theirs open); 0s keeps idle connections",
    schema: duration("idle-connection-timeout"),
  },
  "max-concurrent-streams": {
    env: "STRATA_MAX_CONCURRENT_STREAMS",
    default: "10000",
    help: "streams one client connection may have open at once, as etcd's --max-concurrent-streams; it can only lower strata's bound of 10000 (etcd's default, 4294967295, means no limit there and 10000 here)",
    schema: v.pipe(
      v.union([v.number(), v.string()]),
      v.transform(Number),
      v.check((n) => Number.isInteger(n) && n > 0 && n <= 4294967295, "max-concurrent-streams must be a whole number from 1 to 4294967295"),
    ),
  },
  "max-connections": {
    env: "STRATA_MAX_CONNECTIONS",
    default: "10000",
    help: "client connections open at once; a new HTTP/2 connection past it gets GOAWAY \"too many connections\" and is closed, the others untouched (HTTP/1.1 has its own bound of 1000); 0: no bound, as etcd (see docs/http2-limits.md)",
    schema: v.pipe(
      v.union([v.number(), v.string()]),
      v.transform(Number),
      v.check((n) => Number.isInteger(n) && n >= 0, "max-connections must be a whole number, 0 for no bound"),
    ),
  },
  "quota-backend-bytes": {
    env: "STRATA_QUOTA_BACKEND_BYTES",
    default: "0",
    help: "bytes each database may occupy before writes are refused with etcd's NOSPACE alarm, as etcd's --quota-backend-bytes; 0: etcd's 2 GiB for SQLite and none for database servers (PostgreSQL, MySQL, NATS); below 0: none",
    schema: v.pipe(
      v.union([v.number(), v.string()]),
      v.transform((x) => (typeof x === "string" && /^\s*-?\d+\s*$/.test(x) ? Number(x) : typeof x === "number" ? x : NaN)),
      v.check((n) => Number.isSafeInteger(n), "quota-backend-bytes must be a whole number of bytes (0: the default, below 0: no quota)"),
    ),
  },
  "cert-file": {
    env: "STRATA_CERT_FILE",
    default: "",
    help: "server TLS certificate (PEM, may include the chain), as etcd's --cert-file; reloaded when the file changes",
    schema: v.string(),
  },
  "key-file": {
    env: "STRATA_KEY_FILE",
    default: "",
    help: "private key of --cert-file (PEM), as etcd's --key-file",
    schema: v.string(),
  },
  "trusted-ca-file": {
    env: "STRATA_TRUSTED_CA_FILE",
    default: "",
    help: "CA certificates (PEM) that client certificates must be signed by, as etcd's --trusted-ca-file",
    schema: v.string(),
  },
  "client-cert-auth": {
    env: "STRATA_CLIENT_CERT_AUTH",
    default: "false",
    flag: "boolean",
    help: "refuse clients without a certificate signed by --trusted-ca-file, as etcd's --client-cert-auth",
    schema: yesNo("client-cert-auth"),
  },
  "client-crl-file": {
    env: "STRATA_CLIENT_CRL_FILE",
    default: "",
    help: "certificate revocation list (PEM or DER): client certificates whose serial number it lists are refused, as etcd's --client-crl-file; needs --client-cert-auth; reloaded when the file changes",
    schema: v.string(),
  },
  "auto-tls": {
    env: "STRATA_AUTO_TLS",
    default: "false",
    flag: "boolean",
    help: "without --cert-file, serve TLS with a self-signed certificate made at each start, as etcd's --auto-tls (for clients that skip verification, such as etcdctl --insecure-skip-tls-verify); needs an https:// listen URL",
    schema: yesNo("auto-tls"),
  },
  "cipher-suites": {
    env: "STRATA_CIPHER_SUITES",
    default: "",
    help: "TLS 1.2 cipher suites offered, comma separated, by the names etcd's --cipher-suites takes (e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); TLS 1.3 keeps its own; empty: the TLS library's defaults",
    schema: v.string(),
  },
  "auth-token": {
    env: "STRATA_AUTH_TOKEN",
    default: "simple",
    help: "etcd's --auth-token: simple (random tokens this process remembers), or jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256|ES256|…,ttl=5m (signed tokens every strata process with the key accepts)",
    schema: v.pipe(v.string(), v.check((s) => s === "simple" || s.startsWith("jwt"), "auth-token must be simple or jwt,… (as etcd's --auth-token)")),
  },
  "auth-token-ttl": {
    env: "STRATA_AUTH_TOKEN_TTL",
    default: "300",
    help: "seconds a simple token stays valid after its last use, as etcd's --auth-token-ttl",
    schema: positiveInt("auth-token-ttl"),
  },
  "bcrypt-cost": {
    env: "STRATA_BCRYPT_COST",
    default: "10",
    help: "bcrypt cost of new user passwords (4 to 31), as etcd's --bcrypt-cost; each step doubles the time a password takes to check",
    schema: v.pipe(positiveInt("bcrypt-cost"), v.check((n) => n >= 4 && n <= 31, "bcrypt-cost must be between 4 and 31")),
  },
  "metrics-listen": {
    env: "STRATA_METRICS_LISTEN",
    etcd: "listen-metrics-urls",
    default: "http://127.0.0.1:2381",
    help: "URL to serve /metrics, /health, /healthz, /readyz and the status page on (HTTP), as etcd's --listen-metrics-urls; empty turns it off",
    schema: v.pipe(
      v.string(),
      v.check((s) => s === "" || s.startsWith("http://"), "metrics-listen must be a URL starting with http://, or empty to turn it off"),
    ),
  },
  "log-level": {
    env: "STRATA_LOG_LEVEL",
    default: "info",
    help: "least severe log lines written: debug, info, warn or error (etcd's panic and fatal mean error)",
    schema: v.pipe(v.unknown(), v.transform(logLevelOf), v.picklist(LOG_LEVELS, "log-level must be debug, info, warn or error")),
  },
  "slow-request-threshold": {
    env: "STRATA_SLOW_REQUEST_THRESHOLD",
    etcd: "experimental-warning-apply-duration",
    default: "100ms",
    help: "requests taking longer are logged as warnings, as etcd's \"request took too long\"",
    schema: duration("slow-request-threshold"),
  },
  "slow-request-interval": {
    env: "STRATA_SLOW_REQUEST_INTERVAL",
    default: "10s",
    help: "slow requests are logged as one warning per interval: the first in full as it happens, then one line with how many more and the slowest; 0s: one line per slow request",
    schema: duration("slow-request-interval"),
  },
} as const;

type Settings = typeof SETTINGS;
type SettingName = keyof Settings;

/** every setting with its name, typed as one */
const SETTING_ENTRIES = Object.entries(SETTINGS) as Array<[SettingName, Settings[SettingName]]>;

function isSetting(name: string): name is SettingName {
  return name in SETTINGS;
}

/** etcd's name of a setting strata names otherwise → strata's name */
const ETCD_ALIASES: Record<string, string> = Object.fromEntries(
  Object.entries(SETTINGS).flatMap(([name, s]) => ("etcd" in s ? [[s.etcd, name]] : [])),
);
export type Config = { [K in keyof Settings]: v.InferOutput<Settings[K]["schema"]> } & {
  autoCompaction: Retention | undefined;
  /** backends and routing rules; a plain --backend is one backend named "default" */
  topology: Topology;
  /** the file the topology came from, watched for appended rules */
  topologyFile: string | undefined;
  /** a topology served elsewhere (a URL, a Secret), read once strata starts and followed */
  topologySource: RemoteTopology | undefined;
  /** certificate files when the API is served over TLS */
  tls: TlsSettings | undefined;
  /** the client URLs listened on (--listen, etcd's --listen-client-urls) */
  listenUrls: URL[];
  /** etcd flags (and ETCD_ variables) given that mean nothing to strata (raft, peers, ...); warned about once */
  ignoredEtcdFlags: string[];
};

/** the items of a comma-separated list, trimmed */
export function splitList(s: string): string[] {
  return s.split(",").map((x) => x.trim()).filter(Boolean);
}

export { ConfigError };

export function helpText(): string {
  return ["Usage: strata [serve] [flags]", "", "Serves the etcd v3 API (on an embedded SQLite database unless told otherwise).", "", flagsHelp()].join("\n");
}

/** every serve setting: flag, environment variable, meaning, default */
export function flagsHelp(): string {
  const lines = [
    "Serve flags (each also read from the environment variable shown, or from --config FILE):",
    "  --config FILE  (STRATA_CONFIG, or TOPOLOGY_CONFIG)",
    "      YAML or JSON file whose keys are the flag names below, and optionally",
    "      backends/default/routes/key-prefix for routing (or a HariKube topology);",
    "      for serve also a topology at http(s)://URL (polled) or secret://NAMESPACE/NAME",
    "      (a Secret in --backend, watched): docs/topology-config.md",
  ];
  for (const [name, s] of Object.entries(SETTINGS)) {
    lines.push(`  --${name}  (${s.env})`, `      ${s.help}${s.default ? ` [default: ${s.default}]` : ""}`);
    if ("etcd" in s) lines.push(`      also --${s.etcd}, etcd's name`);
  }
  lines.push("  --help", "      print this help", "", "etcd's raft, peer and cluster flags are accepted and ignored, with one warning (docs/etcd-flags.md).");
  return lines.join("\n");
}

/**
 * Reads flags, environment and config file; throws ConfigError naming the source and setting.
 * The topology is only parsed here: what the router can serve is checked by
 * router/validate.ts where the router is opened (cli/config.ts).
 */
export function loadConfig(argv: string[], env: Record<string, string | undefined>): Config {
  const { argv: meaningful, ignored: ignoredEtcdFlags } = withoutIgnored(argv);
  argv = meaningful;
  const options: Record<string, { type: "string" | "boolean" }> = { config: { type: "string" } };
  for (const [name, s] of Object.entries(SETTINGS)) options[name] = { type: "flag" in s ? "boolean" : "string" };
  for (const [alias, name] of Object.entries(ETCD_ALIASES)) options[alias] = options[name]!;
  // etcd's boolean flags are also written --client-cert-auth=true, which parseArgs refuses
  const spelled: Record<string, string> = {};
  argv = argv.filter((arg) => {
    const m = arg.match(/^--([a-z-]+)=(.*)$/s);
    if (!m || options[m[1]!]?.type !== "boolean") return true;
    spelled[m[1]!] = m[2]!;
    return false;
  });
  const foreign = foreignFlagHint(argv, (name) => name in options);
  if (foreign) throw new ConfigError(`${foreign}; see strata serve --help`);
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = { ...parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values, ...spelled };
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}; see strata serve --help`);
  }
  // each setting's value before validation, and where it came from
  const raw = Object.fromEntries(SETTING_ENTRIES.map(([name, s]) => [name, { value: s.default as unknown, source: "default" }])) as Record<
    SettingName,
    { value: unknown; source: string }
  >;

  // an empty variable is unset, as for every other setting
  const named = (flags.config as string | undefined) || env.STRATA_CONFIG || env.TOPOLOGY_CONFIG || undefined;
  const remote = named ? remoteTopology(named) : undefined;
  const file = remote ? undefined : named?.replace(/^file:\/\//, "");
  let topology: Topology | undefined;
  if (file) {
    const doc = readConfigFile(file);
    topology = readTopology(doc, file);
    for (const [name, value] of Object.entries(doc)) {
      if ((TOPOLOGY_KEYS as readonly string[]).includes(name)) continue;
      const setting = ETCD_ALIASES[name] ?? name;
      const foreignHint = isSetting(setting) ? undefined : foreignSettingHint(name, value);
      if (foreignHint) throw new ConfigError(`${file}: "${name}" is not a strata setting: ${foreignHint}`);
      if (!isSetting(setting)) {
        throw new ConfigError(`${file}: unknown setting "${name}"; known settings: ${[...Object.keys(SETTINGS), ...TOPOLOGY_KEYS].join(", ")}`);
      }
      raw[setting] = { value: typeof value === "number" ? String(value) : value, source: `${file}: ${name}` };
    }
  }
  for (const [name, s] of SETTING_ENTRIES) {
    // etcd's environment (ETCD_NAME, ETCD_DATA_DIR, ..., as in Debian's /etc/default/etcd), under strata's own
    for (const flag of [...(ETCD_SAME_NAME.includes(name) ? [name] : []), ...("etcd" in s ? [s.etcd] : [])]) {
      const value = env[etcdEnv(flag)];
      if (value !== undefined && value !== "") raw[name] = { value, source: `environment ${etcdEnv(flag)}` };
    }
    if (env[s.env] !== undefined && env[s.env] !== "") raw[name] = { value: env[s.env], source: `environment ${s.env}` };
    const given = [name, ...Object.keys(ETCD_ALIASES).filter((a) => ETCD_ALIASES[a] === name)].filter((f) => flags[f] !== undefined);
    if (given.length > 1) throw new ConfigError(`flags ${given.map((f) => `--${f}`).join(" and ")} set the same setting; give one`);
    if (given[0]) raw[name] = { value: flags[given[0]], source: `flag --${given[0]}` };
  }

  const out: Record<string, unknown> = {};
  for (const [name, s] of SETTING_ENTRIES) {
    const { value, source } = raw[name];
    const r = v.safeParse(s.schema as v.GenericSchema, value);
    if (!r.success) throw new ConfigError(`${source}: ${r.issues[0]!.message} (got ${JSON.stringify(value)})`);
    out[name] = r.output;
  }
  const config = out as Config;
  if (topology && raw.backend.source !== "default") {
    throw new ConfigError(`${raw.backend.source}: ${file} names its backends; set the URL under backends: there instead`);
  }
  if (config["data-dir"]) {
    const source = raw["data-dir"].source;
    if (raw.backend.source !== "default") throw new ConfigError(`${source}: ${raw.backend.source} says where the data lives too; give one`);
    if (topology) throw new ConfigError(`${source}: ${file} names its backends; give one`);
    // a relative directory is the working directory's, as etcd's
    raw.backend = { value: `sqlite://${resolve(config["data-dir"], "strata.db")}`, source };
    Object.assign(config, { backend: raw.backend.value });
  }
  config.topology = topology ?? singleBackend(normaliseEndpoint(config.backend), raw.backend.source);
  config.topologyFile = topology ? file : undefined;
  config.topologySource = remote;
  config.tls = tlsSettings(config, (name) => raw[name].source);
  config.listenUrls = splitList(config.listen).map((u) => new URL(u));
  config.ignoredEtcdFlags = [...ignoredEtcdFlags, ...ignoredEtcdEnv(env)];
  config.autoCompaction = autoCompaction(config["auto-compaction-mode"], config["auto-compaction-retention"], raw["auto-compaction-retention"].source);
  return config;
}

/** undefined for a file (a path, or file://PATH) */
function remoteTopology(named: string): RemoteTopology | undefined {
  if (/^https?:\/\//.test(named)) {
    if (!URL.canParse(named)) throw new ConfigError(`${named}: not a valid URL`);
    return { kind: "url", url: named };
  }
  if (named.startsWith("secret://")) {
    const m = /^secret:\/\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(named);
    if (!m) throw new ConfigError(`${named}: a Secret is named secret://NAMESPACE/NAME, such as secret://kube-system/topology`);
    return { kind: "secret", namespace: m[1]!, name: m[3]!, source: named };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//.test(named) && !named.startsWith("file://")) {
    throw new ConfigError(`${named}: a config is a file (PATH or file://PATH), an http(s):// URL or secret://NAMESPACE/NAME`);
  }
  return undefined;
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`${path}: cannot read config file: ${(err as Error).message}`);
  }
  return parseConfigText(text, path);
}

/** A config document's settings; `path` names it in errors and tells JSON (.json) from YAML. */
export function parseConfigText(text: string, path: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = path.endsWith(".json") ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    const first = (err as Error).message.split("\n")[0];
    throw new ConfigError(`${path}: not valid ${path.endsWith(".json") ? "JSON" : "YAML"}: ${first}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) throw new ConfigError(`${path}: expected a mapping of setting names to values`);
  return doc as Record<string, unknown>;
}

function autoCompaction(mode: string, retention: string | number, source: string): Config["autoCompaction"] {
  const text = String(retention).trim();
  if (text === "0" || text === "") return undefined;
  if (mode === "revision") {
    if (!/^\d+$/.test(text)) throw new ConfigError(`${source}: in revision mode the retention is a number of revisions (got "${text}")`);
    return { mode: "revision", retention: BigInt(text) };
  }
  // etcd reads a bare number as hours
  const ms = /^\d+(\.\d+)?$/.test(text) ? Number(text) * 3_600_000 : parseDuration(text);
  if (ms === undefined || ms <= 0) throw new ConfigError(`${source}: retention must be a duration such as 30m or 1h, or a number of hours (got "${text}")`);
  return { mode: "periodic", retentionMs: ms };
}
