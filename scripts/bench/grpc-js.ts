// strata against a real etcd on the same machine, in one run, with the same client
// (etcd3 on grpc-js, default settings for both) and the same Kubernetes-shaped
// workloads; prints throughput, latency and server memory with the strata/etcd ratio
// per row, checks the performance goals, and writes the results as JSON.
//   npm run bench:grpc-js -- [--backends sqlite,postgres,mariadb,nats,etcd] [--objects 50000] [--out bench-results.json]
// Smaller runs: --objects, --updates, --gets, --watch-seconds, --leases, --total-keys;
// --runs N repeats everything and reports each figure's median; --check-perf s|m|l|xl|off
// picks the load of the closing `etcdctl check perf` (60 s per target).
// Not a test: nothing here asserts.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startEtcd } from "../../test/support/etcd.ts";
import { freshDatabase, startStrata, stopDatabaseServers } from "../../test/support/strata.ts";
import { Results } from "./report.ts";
import { runWorkloads, type Sizes } from "./workloads.ts";

const { values } = parseArgs({
  options: {
    backends: { type: "string", default: "sqlite" },
    objects: { type: "string", default: "50000" },
    hot: { type: "string", default: "5000" },
    updates: { type: "string", default: "20000" },
    gets: { type: "string", default: "50000" },
    clients: { type: "string", default: "64" },
    watchers: { type: "string", default: "500" },
    "watch-prefixes": { type: "string", default: "100" },
    "watch-rate": { type: "string", default: "1000" },
    "watch-seconds": { type: "string", default: "10" },
    leases: { type: "string", default: "1000" },
    "lease-ttl": { type: "string", default: "10" },
    "total-keys": { type: "string", default: "100000" },
    runs: { type: "string", default: "1" },
    "check-perf": { type: "string", default: "m" },
    out: { type: "string", default: "bench-results.json" },
  },
});
const number = (name: keyof typeof values) => {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive whole number, not ${values[name]}`);
  return n;
};
const sizes: Sizes = {
  objects: number("objects"),
  hot: number("hot"),
  updates: number("updates"),
  gets: number("gets"),
  clients: number("clients"),
  watchers: number("watchers"),
  watchPrefixes: number("watch-prefixes"),
  watchRate: number("watch-rate"),
  watchSeconds: number("watch-seconds"),
  leases: number("leases"),
  leaseTtl: number("lease-ttl"),
  totalKeys: number("total-keys"),
  checkPerfLoad: values["check-perf"] === "off" ? undefined : values["check-perf"],
};
if (sizes.checkPerfLoad && !["s", "m", "l", "xl"].includes(sizes.checkPerfLoad)) {
  throw new Error(`--check-perf must be s, m, l, xl or off, not ${sizes.checkPerfLoad}`);
}
const backends = values.backends!.split(",").map((b) => b.trim());
for (const b of backends) {
  if (!["sqlite", "postgres", "mariadb", "nats", "etcd"].includes(b)) {
    throw new Error(`--backends: unknown backend ${b} (sqlite, postgres, mariadb, nats, or etcd for strata in front of an upstream etcd)`);
  }
}

const runs = number("runs");
const targets = ["etcd", ...backends.map((b) => `strata/${b}`)];
const load = loadavg()[0]!.toFixed(2);
const started = Date.now();

/** one run of every target, etcd first; each on a fresh server and database */
async function runOnce(run: number): Promise<Results> {
  const results = new Results();
  const of = runs > 1 ? ` (run ${run + 1} of ${runs})` : "";
  console.log(`etcd (default settings)${of} ...`);
  const etcd = await startEtcd();
  try {
    await runWorkloads(etcd.endpoint, sizes, (...r) => results.record("etcd", ...r));
  } finally {
    await etcd.stop();
  }
  for (const backend of backends) {
    console.log(`strata on ${backend}${of} ...`);
    const dir = mkdtempSync(join(tmpdir(), "strata-bench-"));
    // etcd's default: no automatic compaction
    const strata = await startStrata(["--auto-compaction-retention", "0"], await freshDatabase(backend, dir));
    try {
      await runWorkloads(strata.endpoint, sizes, (...r) => results.record(`strata/${backend}`, ...r));
    } catch (err) {
      console.log(`  strata/${backend} failed: ${(err as Error).message}`);
      throw err;
    } finally {
      // what strata itself said about anything that went wrong
      const said = strata.stderr().split("\n").filter((l) => /"level":"(warn|error)"|panic|Segmentation|error:/.test(l) && !/took too long/.test(l));
      if (said.length > 0) console.log(`  strata/${backend} logged:\n${said.slice(-20).join("\n")}`);
      await strata.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return results;
}

const all: Results[] = [];
for (let run = 0; run < runs; run++) all.push(await runOnce(run));
await stopDatabaseServers();
const results = Results.median(all);

const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`;
const conditions = `${runs > 1 ? `medians of ${runs} runs; ` : ""}load average ${load} before it started; ${((Date.now() - started) / 60_000).toFixed(1)} min`;
console.log(`\nstrata vs etcd, ${new Date().toISOString().slice(0, 10)} on ${machine} (${conditions}); client: etcd3 (grpc-js) on Bun in one process on the same machine\n`);
console.log(results.table(targets));
console.log(`\n${results.goals(targets).join("\n")}`);
writeFileSync(values.out!, JSON.stringify({ date: new Date().toISOString(), machine, conditions, sizes, rows: results.rows, runs: all.map((r) => r.rows) }, null, 2));
console.log(`\nresults written to ${values.out}`);
process.exit(0);
