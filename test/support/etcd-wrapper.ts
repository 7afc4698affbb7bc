// A stand-in for the `etcd` binary that etcd 3.4's own end-to-end suite starts
// (test/support/etcd-e2e.ts puts it in the suite's bin dir): translates etcd's flags to
// strata's, serves strata in this process, and once strata listens prints the lines the
// suite waits for ("enabled capabilities for version", "published"). In this process, so
// the suite's SIGKILL ends strata itself and frees the port for its next start.
// Flags strata has under etcd's name are passed on as they are; peer, raft and cluster
// flags mean nothing to one strata and are dropped with one line naming them.
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { serveCommand } from "../../src/cli/serve.ts";
import { SETTINGS } from "../../src/config/config.ts";

/** etcd's flags that take no value (`--client-cert-auth`, also written `--client-cert-auth=true`) */
const ETCD_BOOLEANS = new Set([
  "client-cert-auth", "auto-tls", "peer-client-cert-auth", "peer-auto-tls", "force-new-cluster",
  "strict-reconfig-check", "enable-v2", "experimental-initial-corrupt-check", "enable-pprof",
  "enable-grpc-gateway", "debug", "pre-vote", "logger-stderr",
]);

/** etcd's flags translated to a strata flag of another name or form */
const TRANSLATED = new Set(["listen-client-urls", "data-dir", "listen-metrics-urls", "log-level", "advertise-client-urls"]);

/** etcd's flags read as `--name value` / `--name=value` pairs, in order */
function readEtcdFlags(argv: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < argv.length; i++) {
    const m = argv[i]!.match(/^--?([a-z0-9-]+)(?:=(.*))?$/s);
    if (!m) throw new Error(`etcd-wrapper: cannot read argument ${JSON.stringify(argv[i])}`);
    const [, name, inline] = m as unknown as [string, string, string | undefined];
    if (inline !== undefined) out.push([name, inline]);
    else if (ETCD_BOOLEANS.has(name)) out.push([name, "true"]);
    else out.push([name, argv[++i] ?? ""]);
  }
  return out;
}

/** one URL of a comma-separated list: the https one when strata serves TLS (it listens on one) */
function pickUrl(list: string, tls: boolean): string {
  const urls = list.split(",").map((s) => s.trim()).filter(Boolean);
  return urls.find((u) => u.startsWith(tls ? "https://" : "http://")) ?? urls[0] ?? "";
}

export interface Translation {
  args: string[];
  /** etcd flags with no meaning for strata, dropped */
  ignored: string[];
  name: string;
  clientUrls: string;
  /** members named by --initial-cluster: more than one is a raft cluster strata cannot be */
  members: number;
}

export function translate(argv: string[]): Translation {
  const flags = readEtcdFlags(argv);
  const get = (n: string) => flags.filter(([k]) => k === n).at(-1)?.[1];
  const tls = !!get("cert-file") || get("auto-tls") === "true";
  const args: string[] = [];
  const ignored: string[] = [];
  const listen = pickUrl(get("listen-client-urls") ?? "http://localhost:2379", tls);
  // strata listens on one address: the loopback one that `localhost` names for etcdctl
  args.push("--listen", listen.replace("//localhost:", "//127.0.0.1:"));
  args.push("--advertise-client-urls", get("advertise-client-urls") ?? listen);
  const dataDir = resolve(get("data-dir") ?? `${get("name") ?? "default"}.etcd`);
  mkdirSync(dataDir, { recursive: true });
  args.push("--backend", `sqlite://${dataDir}/strata.db`);
  // etcd serves no metrics listener unless asked; strata's default port would collide between runs
  args.push(`--metrics-listen=${pickUrl(get("listen-metrics-urls") ?? "", false)}`);
  const level = get("log-level");
  if (level) args.push("--log-level", level === "panic" || level === "fatal" ? "error" : level);
  for (const [name, value] of flags) {
    if (TRANSLATED.has(name)) continue;
    if (!(name in SETTINGS)) {
      ignored.push(`--${name}`);
      continue;
    }
    const boolean = "flag" in SETTINGS[name as keyof typeof SETTINGS];
    args.push(boolean ? `--${name}=${value}` : `--${name}`, ...(boolean ? [] : [value]));
  }
  const members = (get("initial-cluster") ?? "").split(",").filter(Boolean).length;
  return { args, ignored, name: get("name") ?? "default", clientUrls: get("advertise-client-urls") ?? listen, members };
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  if (argv[0] && !argv[0].startsWith("-")) {
    // `etcd grpc-proxy start`, `etcd gateway start`: etcd's proxies, not a server
    console.log(`etcd-wrapper: etcd ${argv[0]} has no strata equivalent`);
    process.exit(1);
  }
  const t = translate(argv);
  if (t.ignored.length) console.log(`etcd-wrapper: ignoring ${t.ignored.join(" ")} (no strata equivalent)`);
  if (t.members > 1) {
    // three strata on three data dirs would be three unrelated stores: say so and stop
    console.log(`etcd-wrapper: clustered: --initial-cluster names ${t.members} members; strata has no raft`);
    process.exit(1);
  }
  console.log(`etcd-wrapper: strata serve ${t.args.join(" ")}`);
  await serveCommand(t.args);
  // what etcd 3.4 logs once it serves (tests/e2e's etcdServerReadyLines wait for these)
  console.log("etcd-wrapper: enabled capabilities for version 3.4");
  console.log(`etcd-wrapper: published {Name:${t.name} ClientURLs:[${t.clientUrls.split(",").join(" ")}]} to cluster`);
  console.log("etcd-wrapper: ready to serve client requests");
}
