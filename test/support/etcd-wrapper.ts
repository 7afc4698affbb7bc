// A stand-in for the `etcd` binary that etcd 3.4's own end-to-end suite starts
// (test/support/etcd-e2e.ts puts it in the suite's bin dir). strata takes etcd's flags
// itself (docs/etcd-flags.md); this adds only what a test harness needs beyond that: etcd's
// defaults where strata's differ, one scheme when the suite asks for http and https on one
// port, a refusal for clusters and proxies, and the lines the suite waits for once strata
// listens ("enabled capabilities for version", "published"). It serves strata in this
// process, so the suite's SIGKILL ends strata itself and frees the port for its next start.
import { serveCommand } from "../../src/cli/serve.ts";

/** the value of the last `--name value` / `--name=value` on the command line */
function flag(argv: string[], name: string): string | undefined {
  let value: string | undefined;
  argv.forEach((a, i) => {
    if (a === `--${name}`) value = argv[i + 1];
    else if (a.startsWith(`--${name}=`)) value = a.slice(name.length + 3);
  });
  return value;
}

export interface Translation {
  args: string[];
  name: string;
  clientUrls: string;
  /** members named by --initial-cluster: more than one is a raft cluster strata cannot be */
  members: number;
}

export function translate(argv: string[]): Translation {
  const args = argv.filter((a, i) => !a.startsWith("--listen-client-urls") && argv[i - 1] !== "--listen-client-urls");
  const name = flag(argv, "name") ?? "default";
  // strata serves one scheme per port: the https URL when the suite asks for both
  const tls = !!flag(argv, "cert-file") || argv.some((a) => a === "--auto-tls" || a === "--auto-tls=true");
  const urls = (flag(argv, "listen-client-urls") ?? "http://localhost:2379").split(",");
  const listen = urls.find((u) => u.startsWith(tls ? "https://" : "http://")) ?? urls[0]!;
  args.push(`--listen-client-urls=${listen}`);
  // etcd's defaults where strata's differ: data in NAME.etcd, no metrics listener (strata's
  // default port would collide between runs)
  if (!flag(argv, "data-dir")) args.push(`--data-dir=${name}.etcd`);
  if (!flag(argv, "listen-metrics-urls")) args.push("--listen-metrics-urls=");
  const members = (flag(argv, "initial-cluster") ?? "").split(",").filter(Boolean).length;
  return { args, name, clientUrls: flag(argv, "advertise-client-urls") ?? listen, members };
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  if (argv[0] && !argv[0].startsWith("-")) {
    // `etcd grpc-proxy start`, `etcd gateway start`: etcd's proxies, not a server
    console.log(`etcd-wrapper: etcd ${argv[0]} has no strata equivalent`);
    process.exit(1);
  }
  const t = translate(argv);
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
