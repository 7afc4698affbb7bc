// etcd 3.4's flags on strata's command line, so that an etcd systemd unit or a kubeadm
// static pod runs strata with only the binary changed (docs/etcd-flags.md). etcd's
// client-side flags are strata settings, under etcd's name or with it as an alias
// (config.ts's `etcd:`); here are the flags that mean nothing to one strata (raft, peers,
// cluster membership, etcd's WAL and bbolt tuning, v2, proxies), which are taken off the
// command line and named in one warning, and etcd's extra log levels.

/** etcd's flags that take no value (`--enable-v2`, also written `--enable-v2=true`) */
const BOOLEAN = [
  "initial-election-tick-advance", "strict-reconfig-check", "pre-vote", "enable-v2", "force-new-cluster",
  "peer-client-cert-auth", "peer-auto-tls", "experimental-peer-skip-client-san-verification",
  "experimental-initial-corrupt-check", "experimental-enable-lease-checkpoint", "enable-pprof",
  "enable-grpc-gateway", "debug",
];

/** etcd's flags that take a value */
const WITH_VALUE = [
  // raft and cluster membership: strata is always one member and has no raft
  "initial-cluster", "initial-cluster-state", "initial-cluster-token", "initial-advertise-peer-urls",
  "listen-peer-urls", "heartbeat-interval", "election-timeout", "snapshot-count",
  "discovery", "discovery-fallback", "discovery-proxy", "discovery-srv", "discovery-srv-name",
  // the peer port's TLS: there is no peer port
  "peer-cert-file", "peer-key-file", "peer-trusted-ca-file", "peer-crl-file", "peer-cert-allowed-cn", "peer-cert-allowed-hostname",
  // etcd's own storage: its WAL, raft snapshots and bbolt tuning (strata's data is in its database)
  "wal-dir", "max-snapshots", "max-wals", "backend-batch-interval", "backend-batch-limit",
  "experimental-backend-bbolt-freelist-type", "experimental-compaction-batch-limit", "experimental-corrupt-check-time",
  // etcd's v2 proxy
  "proxy", "proxy-failure-wait", "proxy-refresh-interval", "proxy-dial-timeout", "proxy-write-timeout", "proxy-read-timeout",
  "experimental-enable-v2v3",
  // logging and profiling: strata writes JSON lines to stderr at --log-level
  "logger", "log-outputs", "log-package-levels", "metrics",
  // gRPC keepalive tuning: strata's HTTP/2 server has its own idle and ping limits
  "grpc-keepalive-min-time", "grpc-keepalive-interval", "grpc-keepalive-timeout",
  // the browser checks of etcd's HTTP gateway
  "cors", "host-whitelist",
];

export const ETCD_IGNORED: ReadonlyMap<string, "boolean" | "value"> = new Map([
  ...BOOLEAN.map((n) => [n, "boolean"] as const),
  ...WITH_VALUE.map((n) => [n, "value"] as const),
]);

/** strata settings that are etcd flags of the same name */
export const ETCD_SAME_NAME = [
  "advertise-client-urls", "name", "data-dir", "auto-compaction-mode", "auto-compaction-retention", "max-txn-ops",
  "max-request-bytes", "quota-backend-bytes", "cert-file", "key-file", "trusted-ca-file", "client-cert-auth",
  "client-crl-file", "auto-tls", "cipher-suites", "log-level", "max-concurrent-streams", "auth-token",
  "auth-token-ttl", "bcrypt-cost",
];

/** etcd's environment variable for a flag: ETCD_ and the name in upper case, - as _ */
export const etcdEnv = (flag: string) => `ETCD_${flag.toUpperCase().replaceAll("-", "_")}`;

/** the environment variables of etcd's ignored flags that are set */
export function ignoredEtcdEnv(env: Record<string, string | undefined>): string[] {
  return [...ETCD_IGNORED.keys()].map(etcdEnv).filter((n) => env[n] !== undefined && env[n] !== "");
}

/** etcd's log levels above error, which strata logs as errors */
const ETCD_LOG_LEVELS: Record<string, string> = { panic: "error", fatal: "error" };

/** strata's level for one of etcd's (etcd also takes panic and fatal) */
export function logLevelOf(level: unknown): unknown {
  return typeof level === "string" ? ETCD_LOG_LEVELS[level] ?? level : level;
}

/**
 * The command line without etcd's meaningless flags, and those flags as written (for the
 * warning). Only `--name value`, `--name=value` and a bare boolean are etcd's forms.
 */
export function withoutIgnored(argv: string[]): { argv: string[]; ignored: string[] } {
  const kept: string[] = [];
  const ignored: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const m = argv[i]!.match(/^--([a-z0-9-]+)(=.*)?$/s);
    const kind = m ? ETCD_IGNORED.get(m[1]!) : undefined;
    if (!kind) {
      kept.push(argv[i]!);
      continue;
    }
    ignored.push(`--${m![1]}`);
    // a value follows unless given with = (or the flag is a boolean)
    if (kind === "value" && m![2] === undefined) i++;
  }
  return { argv: kept, ignored: [...new Set(ignored)] };
}
