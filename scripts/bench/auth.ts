// What an authorised request costs: point gets and puts against strata and a real etcd,
// first with auth off, then with auth on as root (who passes every key check) and as a
// tenant whose role holds `--perms` permissions on prefixes (checked against each key).
// The same etcd3 client for both, authenticated as etcd clients are (a token per call).
// Prints rates and strata/etcd ratios.   bun scripts/bench/auth.ts [--ops 20000] [--clients 32] [--perms 20]
// Not a test: nothing here asserts.
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import { Etcd3 } from "etcd3";
import { startEtcd } from "../../test/support/etcd.ts";
import { startStrata, stopDatabaseServers } from "../../test/support/strata.ts";
import { drive } from "./measure.ts";

const { values } = parseArgs({
  options: { ops: { type: "string", default: "20000" }, clients: { type: "string", default: "32" }, perms: { type: "string", default: "20" } },
});
const ops = Number(values.ops), clients = Number(values.clients), perms = Number(values.perms);
const KEYS = 1000;
const key = (i: number) => `/tenant/registry/pods/default/p${i % KEYS}`;

function ctl(endpoint: string, ...args: string[]): void {
  const r = spawnSync("etcdctl", [`--endpoints=${endpoint}`, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr}`);
}

async function measure(endpoint: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const run = async (name: string, c: Etcd3) => {
    await c.get(key(0)).exec(); // authenticates before the clock starts
    out[`${name} get`] = (await drive(ops, clients, (i) => c.get(key(i)).exec())).rate;
    out[`${name} put`] = (await drive(ops / 4, clients, (i) => c.put(key(i)).value("v").exec())).rate;
    c.close();
  };
  await run("auth off", new Etcd3({ hosts: endpoint }));
  ctl(endpoint, "user", "add", "root:rootpw");
  ctl(endpoint, "role", "add", "root");
  ctl(endpoint, "user", "grant-role", "root", "root");
  ctl(endpoint, "role", "add", "tenant");
  // the tenant's own prefix last, after others it must be told apart from
  for (let i = 1; i < perms; i++) ctl(endpoint, "role", "grant-permission", "tenant", "readwrite", `/other-${i}/`, "--prefix=true");
  ctl(endpoint, "role", "grant-permission", "tenant", "readwrite", "/tenant/", "--prefix=true");
  ctl(endpoint, "user", "add", "tenant:tenantpw");
  ctl(endpoint, "user", "grant-role", "tenant", "tenant");
  ctl(endpoint, "auth", "enable");
  await run("root", new Etcd3({ hosts: endpoint, auth: { username: "root", password: "rootpw" } }));
  await run("tenant", new Etcd3({ hosts: endpoint, auth: { username: "tenant", password: "tenantpw" } }));
  return out;
}

const [etcd, strata] = await Promise.all([startEtcd(), startStrata()]);
try {
  const theirs = await measure(etcd.endpoint);
  const ours = await measure(strata.endpoint);
  console.log(`${"workload".padEnd(16)}${"strata/s".padStart(10)}${"etcd/s".padStart(10)}${"ratio".padStart(8)}`);
  for (const [name, rate] of Object.entries(ours)) {
    console.log(`${name.padEnd(16)}${rate.toFixed(0).padStart(10)}${theirs[name]!.toFixed(0).padStart(10)}${(rate / theirs[name]!).toFixed(2).padStart(8)}`);
  }
} finally {
  await Promise.all([etcd.stop(), strata.stop()]);
  await stopDatabaseServers();
}
