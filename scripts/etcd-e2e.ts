// Runs etcd 3.4's own end-to-end suite (or the tests a -run regex picks) once against
// Debian's etcd and once against strata behind the flag-translating wrapper, and prints
// one line per test and "N of M pass on strata, K on etcd". Tests that start a cluster
// of several members are listed apart: strata has no raft, they cannot pass.
// Usage: scripts/etcd-e2e [-run REGEX] [--target both|etcd|strata]
// The whole log of each run (every etcd, strata and etcdctl line) is in .tmp/etcd-e2e/.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CACHE, listTests, runSuite, suiteBinary, type Target, type TestResult } from "../test/support/etcd-e2e.ts";

const { values } = parseArgs({
  options: { run: { type: "string", default: "." }, target: { type: "string", default: "both" }, help: { type: "boolean" } },
  // Go's spelling, as `go test -run`
  args: process.argv.slice(2).map((a) => (a === "-run" ? "--run" : a.replace(/^-run=/, "--run="))),
});
if (values.help || !["both", "etcd", "strata"].includes(values.target!)) {
  console.log("usage: scripts/etcd-e2e [-run REGEX] [--target both|etcd|strata]");
  process.exit(values.help ? 0 : 2);
}
const targets: Target[] = values.target === "both" ? ["etcd", "strata"] : [values.target as Target];

const built = await suiteBinary();
console.log(built.builtMs === undefined ? `suite: ${built.path} (cached)` : `suite: built ${built.path} in ${(built.builtMs / 1000).toFixed(1)} s`);
const names = await listTests(values.run!);
if (names.length === 0) {
  console.log(`no test matches ${values.run}`);
  process.exit(2);
}
console.log(`${names.length} tests match ${values.run}`);

const results: Partial<Record<Target, Map<string, TestResult>>> = {};
for (const target of targets) {
  const logFile = join(CACHE, `${target}.log`);
  console.log(`--- on ${target} (log: ${logFile})`);
  const started = performance.now();
  results[target] = await runSuite(target, names, {
    logFile,
    onResult: (r) => console.log(`  ${r.status.padEnd(7)} ${r.name} (${r.seconds}s)${r.clustered ? " [clustered]" : ""}`),
  });
  console.log(`--- ${target}: ${((performance.now() - started) / 1000).toFixed(0)} s`);
}
writeFileSync(join(CACHE, "results.json"), JSON.stringify(Object.fromEntries(Object.entries(results).map(([t, m]) => [t, [...m!.values()]])), null, 1));

// etcdctl's protobuf output in a failure message would garble the terminal
const printable = (text: string) => text.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "?");
const cell = (t: Target, n: string) => results[t]?.get(n)?.status ?? "-";
const clustered = names.filter((n) => results.strata?.get(n)?.clustered);
const single = names.filter((n) => !clustered.includes(n));
const width = Math.max(...names.map((n) => n.length));
console.log(`\n${"test".padEnd(width)}  etcd     strata   why it fails on strata`);
for (const n of single) {
  const s = results.strata?.get(n);
  console.log(`${n.padEnd(width)}  ${cell("etcd", n).padEnd(7)}  ${cell("strata", n).padEnd(7)}  ${s?.status === "pass" ? "" : printable(s?.reason ?? "")}`);
}
if (clustered.length) {
  console.log(`\nclustered (several members; strata has no raft, not counted below):`);
  for (const n of clustered) console.log(`${n.padEnd(width)}  ${cell("etcd", n).padEnd(7)}`);
}
const passing = (t: Target) => single.filter((n) => results[t]?.get(n)?.status === "pass").length;
const parts = [...targets].reverse().map((t) => (t === "strata" ? `${passing(t)} of ${single.length} pass on strata` : `${passing(t)} on etcd`));
console.log(`\n${parts.join(", ")}${clustered.length ? ` (${clustered.length} clustered test${clustered.length > 1 ? "s" : ""} apart)` : ""}`);
