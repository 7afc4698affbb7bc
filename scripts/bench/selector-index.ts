// What the selector index costs a write (issue 25): strata on a fresh SQLite file with and
// without --selector-index, pinned to core 0 (`taskset`, every thread), loaded from core 1
// with pods as the apiserver stores them (protobuf, five labels and a uid, 1–2 KiB) in
// txns of 10 guarded creates from 16 concurrent clients. Per target: creates/s, the
// server's CPU per create (user+system of the whole process from /proc/PID/stat over the
// load ÷ creates) and the bytes it wrote per create (/proc/PID/io wchar: the WAL and the
// checkpoints into the database file). Medians of --runs, targets in turn within each run.
//   bun scripts/bench/selector-index.ts [--objects 20000] [--runs 3] [--baseline DIR]
// --baseline DIR adds strata from another source tree (its own node_modules), e.g. a
// worktree of the commit before a change: an A/B in one run. Not a test: nothing asserts.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Etcd3 } from "etcd3";
import { asProtobuf } from "../../test/support/k8s-objects.ts";
import { freePort } from "../../test/support/strata.ts";
import { drive, median, sleep } from "./measure.ts";

const { values } = parseArgs({
  options: {
    objects: { type: "string", default: "20000" },
    runs: { type: "string", default: "3" },
    baseline: { type: "string" },
  },
});
const OBJECTS = Number(values.objects), RUNS = Number(values.runs);
const BATCH = 10, CLIENTS = 16;
const ROOT = resolve(import.meta.dir, "../..");
const pinned = cpus().length >= 2 && spawnSync("taskset", ["-V"]).status === 0;
// the client on core 1, the server on core 0
if (pinned) spawnSync("taskset", ["-a", "-p", "-c", "1", String(process.pid)], { stdio: "ignore" });

const pad = (n: number, w: number) => String(n).padStart(w, "0");
const filler = (i: number) => Array.from({ length: 600 + (i % 16) * 64 }, (_, j) => String.fromCharCode(97 + ((i + j * 7) % 26))).join("");
/** a pod and its key; the uid random, as the apiserver's are */
function pod(i: number): [string, Buffer] {
  const name = `pod-${pad(i, 7)}`, namespace = `ns-${i % 5}`;
  const value = Buffer.from(asProtobuf({
    apiVersion: "v1", kind: "Pod", name, namespace,
    labels: { app: `app-${pad(i % 37, 2)}`, shard: `s${pad(i % 100, 2)}`, tier: `t${i % 4}`, "pod-template-hash": `h${i % 200}` },
    annotations: { "kubectl.kubernetes.io/last-applied-configuration": filler(i % 16) },
    body: { spec: { nodeName: `node-${pad(i % 200, 3)}`, restartPolicy: "Always" }, status: { phase: "Running" } },
  }));
  // asProtobuf's uid is "uid-" + name: the same length in random hex
  const at = value.indexOf(`uid-${name}`);
  value.write(crypto.randomUUID().replaceAll("-", "").slice(0, 4 + name.length), at, "latin1");
  return [`/registry/pods/${namespace}/${name}`, value];
}

/** user+system clock ticks of a process, all its threads */
function ticks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(f[11]) + Number(f[12]);
}
const written = (pid: number) => Number(/wchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, "utf8"))![1]);
const TICK_MS = 1000 / Number(spawnSync("getconf", ["CLK_TCK"]).stdout.toString().trim() || 100);

interface Figures {
  rate: number;
  cpuUs: number;
  bytes: number;
}

async function load(root: string, index: boolean): Promise<Figures> {
  const dir = mkdtempSync(join(tmpdir(), "strata-selidx-"));
  const endpoint = `127.0.0.1:${await freePort()}`;
  const args = [
    join(root, "src/main.ts"), "serve", "--listen", `http://${endpoint}`, "--backend", `sqlite://${join(dir, "strata.db")}`,
    "--metrics-listen", `http://127.0.0.1:${await freePort()}`, "--auto-compaction-retention", "0", ...(index ? ["--selector-index"] : []),
  ];
  const cmd = pinned ? ["taskset", "-c", "0", process.execPath, ...args] : [process.execPath, ...args];
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: "ignore" });
  const c = new Etcd3({ hosts: endpoint, grpcOptions: { "grpc.max_receive_message_length": -1 } });
  try {
    for (let tries = 0; ; tries++) {
      try {
        await c.get("ready-probe").exec();
        break;
      } catch (e) {
        if (tries > 300 || child.exitCode !== null) throw e;
        await sleep(100);
      }
    }
    const txn = (from: number) => {
      const puts = Array.from({ length: BATCH }, (_, j) => pod(from + j));
      return () => c.kv.txn({
        compare: puts.map(([key]) => ({ key: Buffer.from(key), target: "Mod" as const, result: "Equal" as const, mod_revision: "0" })),
        success: puts.map(([key, value]) => ({ request_put: { key: Buffer.from(key), value } })),
      });
    };
    // warm-up: Bun compiles the hot paths in the first seconds
    const warm = Array.from({ length: 2000 / BATCH }, (_, i) => txn(OBJECTS + i * BATCH));
    await drive(warm.length, CLIENTS, (i) => warm[i]!());
    const txns = Array.from({ length: OBJECTS / BATCH }, (_, i) => txn(i * BATCH));
    const [t0, w0] = [ticks(child.pid!), written(child.pid!)];
    const r = await drive(txns.length, CLIENTS, (i) => txns[i]!());
    const [t1, w1] = [ticks(child.pid!), written(child.pid!)];
    return { rate: r.rate * BATCH, cpuUs: ((t1 - t0) * TICK_MS * 1000) / OBJECTS, bytes: (w1 - w0) / OBJECTS };
  } finally {
    c.close();
    child.kill("SIGTERM");
    if (child.exitCode === null) await new Promise((r) => child.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  }
}

const targets: Array<[name: string, root: string, index: boolean]> = [
  ["this tree", ROOT, false],
  ["this tree, --selector-index", ROOT, true],
  ...(values.baseline ? [["baseline", resolve(values.baseline), false], ["baseline, --selector-index", resolve(values.baseline), true]] as Array<[string, string, boolean]> : []),
];
const runs = new Map<string, Figures[]>(targets.map(([name]) => [name, []]));
console.log(`${OBJECTS} pods in txns of ${BATCH} creates, ${CLIENTS} clients; ${pinned ? "server on core 0, client on core 1" : "unpinned"}; load ${loadavg()[0]!.toFixed(1)}`);
for (let run = 0; run < RUNS; run++) {
  // the order turns with each run, so drift on the machine falls on each alike
  for (const [name, root, index] of [...targets.slice(run % targets.length), ...targets.slice(0, run % targets.length)]) {
    const f = await load(root, index);
    runs.get(name)!.push(f);
    console.log(`  run ${run + 1} ${name}: ${f.rate.toFixed(0)} creates/s, ${f.cpuUs.toFixed(0)} µs CPU, ${(f.bytes / 1024).toFixed(1)} KiB written per create`);
  }
}
console.log("| | creates/s | server CPU per create | written per create |\n|---|---|---|---|");
for (const [name, fs] of runs) {
  console.log(`| ${name} | ${median(fs.map((f) => f.rate)).toFixed(0)} | ${median(fs.map((f) => f.cpuUs)).toFixed(0)} µs | ${(median(fs.map((f) => f.bytes)) / 1024).toFixed(1)} KiB |`);
}
console.log(`load average at the end ${loadavg()[0]!.toFixed(1)}`);
