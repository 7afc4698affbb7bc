// kine's and k3s's flags on strata's command line: someone moving from kine (or copying a
// k3s line) gets the strata flag that does the same, instead of "Unknown option". They
// are answered, not taken as aliases: kine's values are written differently (tcp://host:port,
// Go's MySQL DSN, http:// for etcd), kine's --ca-file/--cert-file/--key-file secure the
// database connection where etcd's --cert-file/--key-file (strata's) are the certificate
// served, and k3s's --datastore-* flags belong to the client of the datastore, not to it.
// Names from kine's main.go (k3s-io/kine) and k3s's server flags (k3s-io/k3s).

/** hint for a flag and its value (undefined when given without one) */
type Hint = (value: string | undefined) => string;

const DATABASE_TLS = "strata's TLS to a database is set in the --backend URL (its sslmode=, ca= or tls= parameters)";

/** kine's -address forms (tcp://host:port, host:port) as strata's --listen URL */
function listenUrl(value: string | undefined): string {
  const hostPort = (value ?? "0.0.0.0:2379").replace(/^tcp:\/\//, "").replace(/^http:\/\//, "");
  return `http://${hostPort.startsWith(":") ? `0.0.0.0${hostPort}` : hostPort}`;
}

/** a database URL strata's --backend takes as written */
const isStrataBackend = (v: string | undefined) => v !== undefined && /^(sqlite|postgres|postgresql|mysql|mariadb|nats):\/\//.test(v);

const KINE: Record<string, Hint> = {
  endpoint: (v) =>
    `--endpoint is kine's flag for the database; strata's is --backend${isStrataBackend(v) ? ` ${v}` : " URL (sqlite://FILE, postgres://, mysql://user:pass@host:3306/db, nats://, etcd://host:2379)"}`,
  "listen-address": (v) => `--listen-address is kine's flag; strata's is --listen ${listenUrl(v)}`,
  "ca-file": () => `--ca-file is kine's CA for the database connection; ${DATABASE_TLS}`,
  "server-cert-file": () => "--server-cert-file is kine's; strata's is --cert-file (etcd's name), with --key-file",
  "server-key-file": () => "--server-key-file is kine's; strata's is --key-file (etcd's name), with --cert-file",
  "metrics-bind-address": (v) => `--metrics-bind-address is kine's; strata's is --metrics-listen ${v ? listenUrl(v) : "http://HOST:PORT"}`,
  "datastore-max-open-connections": () => "--datastore-max-open-connections is kine's; strata's is --pool-size (connections per database server)",
  "datastore-max-idle-connections": () => "--datastore-max-idle-connections is kine's; strata keeps --pool-size connections per database server",
  "compact-interval": () => "--compact-interval is kine's; strata compacts as etcd does: --auto-compaction-mode and --auto-compaction-retention",
};

const K3S: Record<string, Hint> = {
  "datastore-endpoint": (v) =>
    `--datastore-endpoint is k3s's flag for the datastore k3s uses: give k3s --datastore-endpoint=http://STRATA_HOST:2379; ` +
    `strata's own database is --backend${isStrataBackend(v) ? ` ${v}` : " URL"}`,
  "datastore-cafile": () => "--datastore-cafile is k3s's CA for its datastore: on strata the certificate served is --cert-file and --key-file",
  "datastore-certfile": () => "--datastore-certfile is k3s's client certificate: strata checks it with --trusted-ca-file and --client-cert-auth",
  "datastore-keyfile": () => "--datastore-keyfile is k3s's client key: strata checks k3s's certificate with --trusted-ca-file and --client-cert-auth",
};

const FOREIGN: Record<string, Hint> = { ...KINE, ...K3S };

/**
 * The hint for the first kine or k3s flag on the command line that strata does not take
 * (`known` holds strata's own flag names), or undefined.
 */
export function foreignFlagHint(argv: string[], known: (name: string) => boolean): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const m = argv[i]!.match(/^--([a-z-]+)(?:=(.*))?$/s);
    if (!m || known(m[1]!) || !(m[1]! in FOREIGN)) continue;
    const next = argv[i + 1];
    const value = m[2] ?? (next !== undefined && !next.startsWith("--") ? next : undefined);
    return FOREIGN[m[1]!]!(value);
  }
  return undefined;
}

/** the hint for a config file's setting that is a kine or k3s flag name, or undefined */
export function foreignSettingHint(name: string, value: unknown): string | undefined {
  return FOREIGN[name]?.(typeof value === "string" ? value : undefined);
}
