// The scale benchmark (issue 15): a million Kubernetes-shaped objects on strata (SQLite,
// and a routed SQLite + PostgreSQL config) and on a real etcd holding the same data, in
// one run, one target after another on fresh servers. Per target: load rate; server
// memory sampled throughout every step (peak and after); database and disk size;
// paginated lists (limit 500) over the whole keyspace with the page latency at its start,
// middle and end; count; a label-selected list returning 1% of a resource, sent with
// label_selector (strata filters it server-side) and the stock apiserver way (pages read
// and filtered in the client); a full list through KV.RangeStream (when the server has
// it); start-up time on the data; two updates per object and a compaction of that history
// while a writer measures put latency. Prints a table with strata/etcd ratios and the
// goals, and writes JSON after each target (a run cut short keeps what it measured).
//   bun scripts/bench/scale.ts [--objects 1000000] [--targets sqlite,routed,etcd] [--out scale-results.json]
//     [--updated N: objects updated twice before the compaction (default: all)]
//     [--batch 10: puts per txn while loading] [--clients 16: concurrent txns]
//     [--steps count,pages,selected,rangestream,restart,compaction: which steps follow the load]
//     [--index false: strata without --selector-index (selected ranges then filtered in strata)]
//     [--root DIR: strata from another source tree (an A/B: run once with, once without)]
// Not a test: nothing here asserts. The client (grpc-js on Bun) runs on the same machine.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { create, type DescMessage, fromBinary, type MessageInitShape, type MessageShape, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import postgres from "postgres";
import {
  CompactionRequestSchema,
  CompactionResponseSchema,
  Compare_CompareResult,
  Compare_CompareTarget,
  PutRequestSchema,
  PutResponseSchema,
  RangeRequestSchema,
  type RangeResponse,
  RangeResponseSchema,
  RangeStreamResponseSchema,
  TxnRequestSchema,
  TxnResponseSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { startEtcd } from "../../test/support/etcd.ts";
import { asJson, asProtobuf } from "../../test/support/k8s-objects.ts";
import { freshDatabase, startStrata, stopDatabaseServers } from "../../test/support/strata.ts";
import { drive, median, pct, sleep } from "./measure.ts";
import { Results } from "./report.ts";

const { values } = parseArgs({
  options: {
    objects: { type: "string", default: "1000000" },
    targets: { type: "string", default: "sqlite,routed,etcd" },
    out: { type: "string", default: "scale-results.json" },
    updated: { type: "string" },
    batch: { type: "string", default: "10" },
    clients: { type: "string", default: "16" },
    steps: { type: "string", default: "count,pages,selected,rangestream,restart,compaction" },
    index: { type: "string", default: "true" },
    root: { type: "string" },
  },
});
const whole = (name: string, v: string | undefined) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive whole number, not ${v}`);
  return n;
};
const N = whole("objects", values.objects);
const BATCH = whole("batch", values.batch);
const CLIENTS = whole("clients", values.clients);
const UPDATED = Math.min(N, whole("updated", values.updated ?? String(N)));
const STRATA_ROOT = values.root ? resolve(values.root) : resolve(import.meta.dir, "../..");
if (!existsSync(join(STRATA_ROOT, "src/main.ts"))) throw new Error(`--root ${STRATA_ROOT}: no src/main.ts there`);
const TARGETS = values.targets!.split(",").map((t) => t.trim());
const STEPS = new Set(values.steps!.split(",").map((s) => s.trim()));
for (const s of STEPS) if (!["count", "pages", "selected", "rangestream", "restart", "compaction"].includes(s)) throw new Error(`--steps: unknown step ${s}`);
for (const t of TARGETS) if (!["sqlite", "routed", "etcd"].includes(t)) throw new Error(`--targets: unknown target ${t} (sqlite, routed, etcd)`);

// ---- the objects: 80% pods (protobuf, as the apiserver stores built-ins), 20% custom
// resources of one CRD (JSON, as it stores those), five namespaces, 1.0–1.9 KiB each.
// Label shard=s00..s99 is i mod 100, so shard=s00 selects exactly 1% of each resource.

const PODS = Math.round(N * 0.8);
const WIDGETS = N - PODS;
const POD_PREFIX = "/registry/pods/";
const WIDGET_PREFIX = "/registry/example.com/widgets/";
const SELECTOR = "shard=s00";
const NAMESPACES = 5;
const enc = new TextEncoder();
const pad = (n: number, w: number) => String(n).padStart(w, "0");
const filler = (i: number) => Array.from({ length: 600 + (i % 16) * 64 }, (_, j) => String.fromCharCode(97 + ((i + j * 7) % 26))).join("");
const podKey = (i: number) => enc.encode(`${POD_PREFIX}ns-${i % NAMESPACES}/pod-${pad(i, 7)}`);
const widgetKey = (i: number) => enc.encode(`${WIDGET_PREFIX}ns-${i % NAMESPACES}/widget-${pad(i, 7)}`);

/**
 * A pod's protobuf built once per filler length with placeholders, then copied and
 * patched per object (same widths, so no length prefix changes): encoding each pod from
 * scratch would cost the client more CPU than the server spends storing it.
 */
class PodTemplate {
  private readonly spots: Array<{ at: number; field: number }> = [];
  private readonly bytes: Buffer;
  static readonly markers = ["#######", "%", "^^", "&&", "$$$", "!"];
  constructor(t: number) {
    this.bytes = Buffer.from(asProtobuf({
      apiVersion: "v1", kind: "Pod", name: "pod-#######", namespace: "ns-%",
      labels: { app: "app-^^", shard: "s&&", tier: "t!", "pod-template-hash": "5d4f8b7c9" },
      annotations: { "kubectl.kubernetes.io/last-applied-configuration": filler(t) },
      body: {
        spec: { nodeName: "node-$$$", restartPolicy: "Always", serviceAccountName: "default", schedulerName: "default-scheduler" },
        status: { phase: "Running", podIP: "10.244.1.17" },
      },
    }));
    PodTemplate.markers.forEach((m, field) => {
      for (let at = this.bytes.indexOf(m); at >= 0; at = this.bytes.indexOf(m, at + m.length)) this.spots.push({ at, field });
    });
  }
  fill(i: number): Uint8Array {
    const v = [pad(i, 7), String(i % NAMESPACES), pad(i % 37, 2), pad(i % 100, 2), pad(i % 200, 3), String(i % 4)];
    const out = Buffer.from(this.bytes);
    for (const s of this.spots) out.write(v[s.field]!, s.at, "latin1");
    return out;
  }
}
const podTemplates = Array.from({ length: 16 }, (_, t) => new PodTemplate(t));
const podValue = (i: number) => podTemplates[i % 16]!.fill(i);
const fillers = Array.from({ length: 16 }, (_, t) => filler(t));
const widgetValue = (i: number, generation = 1) => asJson({
  apiVersion: "example.com/v1", kind: "Widget", name: `widget-${pad(i, 7)}`, namespace: `ns-${i % NAMESPACES}`,
  labels: { app: `app-${pad(i % 37, 2)}`, shard: `s${pad(i % 100, 2)}` },
  annotations: { "kubectl.kubernetes.io/last-applied-configuration": fillers[i % 16]! },
  body: { spec: { size: i % 10, color: ["red", "green", "blue"][i % 3], generation } },
});

interface Resource {
  name: string;
  prefix: string;
  count: number;
  key(i: number): Uint8Array;
  value(i: number, generation?: number): Uint8Array;
}
const RESOURCES: Resource[] = [
  { name: "pods", prefix: POD_PREFIX, count: PODS, key: podKey, value: podValue },
  { name: "widgets (CRD)", prefix: WIDGET_PREFIX, count: WIDGETS, key: widgetKey, value: widgetValue },
];

// ---- a raw gRPC client: etcd's messages from strata's generated types, so a Range can
// carry label_selector (14) and the server-streaming RangeStream can be called

class Client {
  private readonly channels: grpc.Client[];
  private next = 0;
  constructor(readonly endpoint: string, channels = 2) {
    this.channels = Array.from({ length: channels }, () =>
      new grpc.Client(endpoint, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1 }));
  }
  call<I extends DescMessage, O extends DescMessage>(method: string, input: I, output: O, req: MessageInitShape<I>, timeoutMs = 600_000): Promise<MessageShape<O>> {
    const ch = this.channels[this.next++ % this.channels.length]!;
    return new Promise((resolve, reject) => {
      ch.makeUnaryRequest(method, (x: Buffer) => x, (x: Buffer) => x, Buffer.from(toBinary(input, create(input, req))), { deadline: Date.now() + timeoutMs }, (err, out) => {
        if (err) reject(err);
        else resolve(fromBinary(output, out!));
      });
    });
  }
  range(req: MessageInitShape<typeof RangeRequestSchema>, timeoutMs?: number): Promise<RangeResponse> {
    return this.call("/etcdserverpb.KV/Range", RangeRequestSchema, RangeResponseSchema, req, timeoutMs);
  }
  /** KV.RangeStream (etcd 3.7): each RangeStreamResponse's range_response handed on as it arrives, never held */
  rangeStream(req: MessageInitShape<typeof RangeRequestSchema>, onPart: (r: RangeResponse) => void): Promise<void> {
    const s = this.channels[0]!.makeServerStreamRequest("/etcdserverpb.KV/RangeStream", (x: Buffer) => x, (x: Buffer) => x, Buffer.from(toBinary(RangeRequestSchema, create(RangeRequestSchema, req))));
    return new Promise((resolve, reject) => {
      s.on("data", (d: Buffer) => onPart(fromBinary(RangeStreamResponseSchema, d).rangeResponse!));
      s.on("error", reject);
      s.on("end", () => resolve());
    });
  }
  close(): void {
    for (const c of this.channels) c.close();
  }
}

const prefixEnd = (p: string) => enc.encode(p.slice(0, -1) + String.fromCharCode(p.charCodeAt(p.length - 1) + 1));
const after = (key: Uint8Array) => Uint8Array.of(...key, 0);

// ---- the server under test, its memory and its size

interface Target {
  name: string;
  endpoint: string;
  pid(): number;
  /** stops the server, keeping its data */
  terminate(): Promise<void>;
  /** starts it again on its data; resolves once its own start-up probe passed */
  start(): Promise<void>;
  /** what answers like /readyz: strata's /readyz, etcd's /health */
  readyUrl: string;
  /** bytes on disk, by part */
  sizes(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** the server's resident memory in MB (10^6 bytes, as the goals state them) */
function rssMB(pid: number): number {
  try {
    const kib = Number(/VmRSS:\s+(\d+) kB/.exec(readProc(pid))?.[1] ?? NaN);
    return (kib * 1024) / 1e6;
  } catch {
    return NaN;
  }
}
const readProc = (pid: number) => readFileSync(`/proc/${pid}/status`, "utf8");

/** samples a process's RSS every 200 ms; mark() starts a step, peak() is the step's highest */
/** the process's CPU time so far (user + system, every thread), in ms; NaN when it cannot be read */
function cpuMs(pid: number): number {
  try {
    // the fields after the command's closing parenthesis: utime and stime are the 12th and 13th
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

class Sampler {
  private stepPeak = 0;
  private allPeak = 0;
  private readonly timer: ReturnType<typeof setInterval>;
  constructor(private readonly pid: () => number) {
    this.timer = setInterval(() => this.sample(), 200);
  }
  sample(): number {
    const v = rssMB(this.pid());
    if (!Number.isNaN(v)) {
      this.stepPeak = Math.max(this.stepPeak, v);
      this.allPeak = Math.max(this.allPeak, v);
    }
    return v;
  }
  mark(): void {
    this.stepPeak = this.sample();
  }
  peak(): number {
    this.sample();
    return this.stepPeak;
  }
  get overall(): number {
    return this.allPeak;
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

const fileBytes = (path: string) => (existsSync(path) ? statSync(path).size : 0);
const sqliteBytes = (path: string) => fileBytes(path) + fileBytes(`${path}-wal`) + fileBytes(`${path}-shm`);
const duBytes = (dir: string) => Number(spawnSync("du", ["-sb", dir], { encoding: "utf8" }).stdout.split(/\s/)[0]);

async function postgresBytes(url: string): Promise<Record<string, number>> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [db] = await sql`SELECT pg_database_size(current_database())::bigint AS b`;
    const out: Record<string, number> = { "PostgreSQL database": Number(db!.b) };
    const rels = await sql`SELECT relname, pg_total_relation_size(c.oid)::bigint AS b FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC LIMIT 4`;
    for (const r of rels) out[`  PostgreSQL table ${r.relname} (with indexes)`] = Number(r.b);
    return out;
  } finally {
    await sql.end();
  }
}

if (!["true", "false"].includes(values.index!)) throw new Error(`--index must be true or false, not ${values.index}`);
// the selector index is opt-in in strata; the benchmark measures selected lists with it unless told
const STRATA_ARGS = ["--auto-compaction-retention", "0", "--quota-backend-bytes", String(64 * 2 ** 30), ...(values.index === "true" ? ["--selector-index"] : [])];

async function startTarget(kind: string, dir: string): Promise<Target> {
  if (kind === "etcd") {
    const e = await startEtcd(["--quota-backend-bytes", String(16 * 2 ** 30)]);
    return {
      name: "etcd", endpoint: e.endpoint, pid: e.pid, readyUrl: `http://${e.endpoint}/health`,
      terminate: e.terminate,
      start: e.restart,
      sizes: async () => ({ "etcd data dir (bbolt + WAL + snapshots)": duBytes(e.dataDir), "  etcd bbolt file": fileBytes(join(e.dataDir, "member/snap/db")) }),
      stop: () => e.stop(),
    };
  }
  let s;
  let sizes: () => Promise<Record<string, number>>;
  if (kind === "sqlite") {
    const url = await freshDatabase("sqlite", dir);
    const path = url.slice("sqlite://".length);
    s = await startStrata(STRATA_ARGS, url, "bun", undefined, STRATA_ROOT);
    sizes = async () => ({ "SQLite file (+ WAL)": sqliteBytes(path) });
  } else {
    // pods (and everything else) on SQLite, the custom resources on PostgreSQL
    const path = join(dir, "main.db");
    const pg = await freshDatabase("postgres", dir);
    const config = join(dir, "strata.yaml");
    writeFileSync(config, `backends:\n  main: sqlite://${path}\n  crs: ${pg}\ndefault: main\nroutes:\n  - match: { group: example.com, resource: widgets }\n    backend: crs\n`);
    s = await startStrata([...STRATA_ARGS, "--config", config], undefined, "bun", undefined, STRATA_ROOT);
    sizes = async () => ({ "SQLite file (+ WAL)": sqliteBytes(path), ...(await postgresBytes(pg)) });
  }
  const strata = s;
  return {
    name: `strata/${kind}`, endpoint: strata.endpoint, pid: strata.pid, readyUrl: `${strata.metrics}/readyz`,
    terminate: async () => void (await strata.terminate()),
    start: strata.restart,
    sizes,
    stop: async () => {
      const said = strata.stderr().split("\n").filter((l) => /"level":"(warn|error)"|panic|Segmentation|error:/.test(l) && !/took too long/.test(l));
      if (said.length > 0) console.log(`  ${kind}: strata logged:\n${said.slice(-10).join("\n")}`);
      await strata.stop();
    },
  };
}

// ---- the steps

type Rec = (workload: string, metric: string, better: "higher" | "lower" | "info", value: number) => void;

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** creates through txns of BATCH puts, each guarded as kube-apiserver guards a create (mod_revision = 0) */
async function load(c: Client, r: Resource, generation: number): Promise<{ rate: number; lat: number[] }> {
  const batches = Math.ceil(r.count / BATCH);
  return drive(batches, CLIENTS, async (b) => {
    const idx = Array.from({ length: Math.min(BATCH, r.count - b * BATCH) }, (_, j) => b * BATCH + j);
    const keys = idx.map((i) => r.key(i));
    const res = await c.call("/etcdserverpb.KV/Txn", TxnRequestSchema, TxnResponseSchema, {
      compare: generation === 1 ? keys.map((key) => ({ key, target: Compare_CompareTarget.MOD, result: Compare_CompareResult.EQUAL, targetUnion: { case: "modRevision" as const, value: 0n } })) : [],
      success: idx.map((i, j) => ({ request: { case: "requestPut" as const, value: { key: keys[j]!, value: r.value(i, generation) } } })),
    });
    if (!res.succeeded) throw new Error(`a create txn in ${r.name} found a key already there`);
  });
}

/** the whole prefix in pages of `limit` at the first page's revision, as the apiserver pages */
async function paginate(c: Client, prefix: string, limit: number, onPage?: (r: RangeResponse) => void): Promise<{ lat: number[]; keys: number; ms: number }> {
  const end = prefixEnd(prefix);
  let key = enc.encode(prefix);
  let revision = 0n;
  let keys = 0;
  const lat: number[] = [];
  const t0 = performance.now();
  for (;;) {
    const t = performance.now();
    const page = await c.range({ key, rangeEnd: end, limit: BigInt(limit), revision });
    lat.push(performance.now() - t);
    onPage?.(page);
    if (revision === 0n) revision = page.header!.revision;
    keys += page.kvs.length;
    if (!page.more || page.kvs.length === 0) break;
    key = after(page.kvs.at(-1)!.key);
  }
  return { lat, keys, ms: performance.now() - t0 };
}

// the labels of a stored object, read as the apiserver's decoder would find them
function readVarint(b: Uint8Array, at: number): [number, number] {
  let v = 0, shift = 0;
  for (;;) {
    const x = b[at++]!;
    v += (x & 0x7f) * 2 ** shift;
    if (x < 0x80) return [v, at];
    shift += 7;
  }
}
/** the length-delimited fields numbered `no` of a protobuf message */
function* pbFields(b: Uint8Array, no: number): Generator<Uint8Array> {
  let at = 0;
  while (at < b.length) {
    const [tag, p] = readVarint(b, at);
    at = p;
    const wire = tag & 7;
    if (wire === 0) at = readVarint(b, at)[1];
    else if (wire === 2) {
      const [len, q] = readVarint(b, at);
      if (tag >>> 3 === no) yield b.subarray(q, q + len);
      at = q + len;
    } else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else throw new Error(`protobuf wire type ${wire}`);
  }
}
const first = (g: Generator<Uint8Array>) => g.next().value as Uint8Array | undefined;
const dec = new TextDecoder();
function labelsOf(v: Uint8Array): Record<string, string> {
  if (v[0] === 0x6b && v[1] === 0x38 && v[2] === 0x73 && v[3] === 0) {
    // k8s\0 + runtime.Unknown{raw=2} → object{metadata=1} → ObjectMeta{labels=11: {key=1, value=2}}
    const meta = first(pbFields(first(pbFields(v.subarray(4), 2))!, 1));
    const out: Record<string, string> = {};
    for (const entry of pbFields(meta!, 11)) out[dec.decode(first(pbFields(entry, 1)))] = dec.decode(first(pbFields(entry, 2)));
    return out;
  }
  return JSON.parse(dec.decode(v)).metadata?.labels ?? {};
}

/** a rate-limited writer (4 loops, ~300 puts/s) updating pods; stop() ends it and gives the latencies */
function writer(c: Client): { stop(): Promise<number[]> } {
  let running = true;
  const lat: number[] = [];
  const loops = Array.from({ length: 4 }, async (_, l) => {
    for (let n = 0; running; n++) {
      const i = (l * 7919 + n * 104729) % PODS;
      const t = performance.now();
      await c.call("/etcdserverpb.KV/Put", PutRequestSchema, PutResponseSchema, { key: podKey(i), value: podValue(i) });
      lat.push(performance.now() - t);
      await sleep(10);
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return lat;
    },
  };
}

/** polls until a Range answers and until the ready URL says 200; ms since t0 for each */
async function readiness(t: Target, t0: number): Promise<{ range: number; ready: number }> {
  const range = (async () => {
    for (;;) {
      const c = new Client(t.endpoint, 1);
      try {
        await c.range({ key: podKey(0) }, 1000);
        return performance.now() - t0;
      } catch {
        await sleep(20);
      } finally {
        c.close();
      }
    }
  })();
  const ready = (async () => {
    for (;;) {
      try {
        const r = await fetch(t.readyUrl, { signal: AbortSignal.timeout(1000) });
        if (r.ok) return performance.now() - t0;
      } catch {
        // not listening yet
      }
      await sleep(20);
    }
  })();
  return { range: await range, ready: await ready };
}

async function step(name: string, run: () => Promise<void>, id?: string): Promise<void> {
  if (id && !STEPS.has(id)) return;
  const t0 = performance.now();
  process.stdout.write(`  ${name} ...`);
  try {
    await run();
    console.log(` ${seconds(performance.now() - t0)}`);
  } catch (err) {
    console.log(` FAILED after ${seconds(performance.now() - t0)}: ${(err as Error).message ?? err}`);
  }
}

const notes: string[] = [];

async function runTarget(kind: string, rec: Rec): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "strata-scale-"));
  const t = await startTarget(kind, dir);
  const mem = new Sampler(t.pid);
  let c = new Client(t.endpoint);
  const mb = (label: string, v: number) => rec(label, "server RSS MB", "lower", v);
  const sizes = async (when: string) => {
    for (const [part, bytes] of Object.entries(await t.sizes())) rec(`${part}, ${when}`, "MB on disk", "lower", bytes / 1e6);
  };
  try {
    mb("empty server, idle", mem.sample());

    // 1. load
    await step(`load ${N} objects (txns of ${BATCH} guarded creates, ${CLIENTS} concurrent)`, async () => {
      mem.mark();
      const t0 = performance.now();
      const cpu0 = cpuMs(t.pid());
      for (const r of RESOURCES) {
        const x = await load(c, r, 1);
        // drive's rate counts txns
        rec(`load ${r.count} ${r.name}`, "objects/s", "higher", (x.rate * r.count) / Math.ceil(r.count / BATCH));
        rec(`load ${r.count} ${r.name}`, "txn p99 ms", "lower", pct(x.lat, 0.99));
      }
      rec(`load ${N} objects`, "objects/s", "higher", N / ((performance.now() - t0) / 1000));
      rec(`load ${N} objects`, "server CPU µs/object", "lower", ((cpuMs(t.pid()) - cpu0) * 1000) / N);
      mb(`load ${N} objects, peak during`, mem.peak());
    });
    await sleep(5000);
    mb(`${N} objects stored, idle after load`, mem.sample());
    await step("sizes", () => sizes("after load"));

    // 2. count
    await step("count_only", async () => {
      for (const r of RESOURCES) {
        const ms: number[] = [];
        for (let k = 0; k < 5; k++) {
          const t0 = performance.now();
          const res = await c.range({ key: enc.encode(r.prefix), rangeEnd: prefixEnd(r.prefix), countOnly: true });
          ms.push(performance.now() - t0);
          if (Number(res.count) !== r.count) throw new Error(`count of ${r.name}: ${res.count}, expected ${r.count}`);
        }
        rec(`count_only of ${r.count} ${r.name}`, "ms (median of 5)", "lower", median(ms));
      }
    }, "count");

    // 3. paginated lists over the whole keyspace of each resource
    await step("paginated lists (limit 500)", async () => {
      mem.mark();
      for (const r of RESOURCES) {
        const lat: number[][] = [];
        let total = 0;
        const cpu0 = cpuMs(t.pid());
        // at small sizes one pass is a few pages: repeat to have a p99 worth the name
        for (let pass = 0; pass < 3 && (pass === 0 || lat.length * lat[0]!.length < 300); pass++) {
          const x = await paginate(c, r.prefix, 500);
          if (x.keys !== r.count) throw new Error(`paginated list of ${r.name} saw ${x.keys} keys, expected ${r.count}`);
          lat.push(x.lat);
          total = x.ms;
        }
        const pages = lat.flat().length;
        const window = (from: number, to: number) => lat.flatMap((l) => l.slice(Math.floor(l.length * from), Math.max(Math.floor(l.length * from) + 1, Math.ceil(l.length * to))));
        const w = `paginated list of ${r.count} ${r.name} (limit 500)`;
        rec(w, "whole list ms", "lower", total);
        // the first page answers the count of the whole range (etcd's); the others carry it
        rec(w, "first page ms", "lower", lat[0]![0]!);
        // CPU on a busy machine says more than latency: a page waits for a core there
        rec(w, "server CPU ms/page", "lower", (cpuMs(t.pid()) - cpu0) / pages);
        rec(w, "page p50 ms", "lower", pct(lat.flat(), 0.5));
        rec(w, "page p99 ms, first 10% of keys", "lower", pct(window(0, 0.1), 0.99));
        rec(w, "page p99 ms, middle 10%", "lower", pct(window(0.45, 0.55), 0.99));
        rec(w, "page p99 ms, last 10%", "lower", pct(window(0.9, 1), 0.99));
        rec(w, "page max ms", "lower", Math.max(...lat.flat()));
      }
      mb("paginated lists, peak during", mem.peak());
    }, "pages");

    // 4. label-selected lists of 1% of each resource
    await step(`selected lists (${SELECTOR}, 1% of each resource)`, async () => {
      mem.mark();
      for (const r of RESOURCES) {
        const expected = Math.ceil(r.count / 100);
        if (kind !== "etcd") {
          const ms: number[] = [];
          // five runs, or fewer when each takes seconds (it does before pushdown: the whole range is read)
          for (let k = 0, spent = 0; k < 5 && (k === 0 || spent < 30_000); k++) {
            const t0 = performance.now();
            const res = await c.range({ key: enc.encode(r.prefix), rangeEnd: prefixEnd(r.prefix), labelSelector: SELECTOR });
            spent += performance.now() - t0;
            ms.push(performance.now() - t0);
            if (res.kvs.length !== expected) throw new Error(`label_selector on ${r.name} answered ${res.kvs.length}, expected ${expected}`);
          }
          rec(`selected list of ${expected} of ${r.count} ${r.name}, label_selector sent`, "ms (median)", "lower", median(ms));
          rec(`selected list of ${expected} of ${r.count} ${r.name}, label_selector sent`, "max ms", "lower", Math.max(...ms));
        }
        // what the same volume costs without a selector: the first 1% of the keys, one range
        {
          const ms: number[] = [];
          for (let k = 0; k < 5; k++) {
            const t0 = performance.now();
            const res = await c.range({ key: enc.encode(r.prefix), rangeEnd: prefixEnd(r.prefix), limit: BigInt(expected) });
            ms.push(performance.now() - t0);
            if (res.kvs.length !== expected) throw new Error(`a range of ${expected} ${r.name} answered ${res.kvs.length}`);
          }
          rec(`plain range of ${expected} ${r.name} (limit ${expected}, no selector): the same volume`, "ms (median of 5)", "lower", median(ms));
        }
        // the stock apiserver's way: pages of up to 10,000 at one revision, filtered by the client
        const ms: number[] = [];
        for (let k = 0; k < 3 && (k === 0 || ms.reduce((x, y) => x + y) < 30_000); k++) {
          let kept = 0;
          const x = await paginate(c, r.prefix, 10_000, (page) => {
            for (const kv of page.kvs) if (labelsOf(kv.value).shard === "s00") kept++;
          });
          ms.push(x.ms);
          if (kept !== expected) throw new Error(`client-side selection of ${r.name} kept ${kept}, expected ${expected}`);
        }
        rec(`selected list of ${expected} of ${r.count} ${r.name}, filtered in the client (pages of 10,000)`, "ms (median)", "lower", median(ms));
      }
      mb("selected lists, peak during", mem.peak());
    }, "selected");

    // 5. the whole set through RangeStream
    await step("full list through KV.RangeStream", async () => {
      mem.mark();
      let kvs = 0, parts = 0;
      const t0 = performance.now();
      try {
        await c.rangeStream({ key: enc.encode("/registry/"), rangeEnd: prefixEnd("/registry/") }, (r) => {
          kvs += r.kvs.length;
          parts++;
        });
      } catch (err) {
        if ((err as grpc.ServiceError).code === grpc.status.UNIMPLEMENTED) {
          const why = `RangeStream: not available on ${t.name} (UNIMPLEMENTED)`;
          console.log(`\n    ${why}`);
          notes.push(why);
          return;
        }
        throw err;
      }
      const ms = performance.now() - t0;
      if (kvs !== N) throw new Error(`RangeStream delivered ${kvs} keys, expected ${N}`);
      rec(`full list of ${N} through RangeStream`, "ms", "lower", ms);
      rec(`full list of ${N} through RangeStream`, "responses", "info", parts);
      mb(`full list of ${N} through RangeStream, peak during`, mem.peak());
    }, "rangestream");

    // 6. start-up on the data
    await step("restart on the data", async () => {
      c.close();
      await t.terminate();
      // the clock starts when the old process has exited
      const t0 = performance.now();
      const starting = t.start();
      const r = await readiness(t, t0);
      await starting;
      rec("start-up with the data present", "ms to answer a Range", "lower", r.range);
      rec("start-up with the data present", `ms to ${kind === "etcd" ? "/health" : "/readyz"} 200`, "lower", r.ready);
      c = new Client(t.endpoint);
      await sleep(5000);
      mb(`${N} objects stored, 5 s after start-up`, mem.sample());
    }, "restart");

    // 7. two updates per object, then a compaction of that history while a writer measures
    const updatedPods = Math.min(UPDATED, PODS);
    const updated: Resource[] = [
      { ...RESOURCES[0]!, count: updatedPods },
      { ...RESOURCES[1]!, count: Math.min(WIDGETS, UPDATED - updatedPods) },
    ].filter((r) => r.count > 0);
    await step(`2 updates of ${UPDATED} objects`, async () => {
      mem.mark();
      const t0 = performance.now();
      for (let generation = 2; generation <= 3; generation++) for (const r of updated) await load(c, r, generation);
      rec(`2 updates of ${UPDATED} objects (txns of ${BATCH} puts)`, "writes/s", "higher", (2 * UPDATED) / ((performance.now() - t0) / 1000));
      mb(`2 updates of ${UPDATED} objects, peak during`, mem.peak());
    }, "compaction");
    await step("sizes", () => sizes("with the history of 2 updates"), "compaction");
    await step("compaction to the latest revision", async () => {
      const base = writer(c);
      await sleep(5000);
      const quiet = await base.stop();
      rec("writes before the compaction (4 writers, ~300/s)", "p99 ms", "lower", pct(quiet, 0.99));
      const revision = (await c.range({ key: podKey(0) })).header!.revision;
      mem.mark();
      const w = writer(c);
      const t0 = performance.now();
      await c.call("/etcdserverpb.KV/Compact", CompactionRequestSchema, CompactionResponseSchema, { revision, physical: true });
      const ms = performance.now() - t0;
      const during = await w.stop();
      const w2 = writer(c);
      await sleep(5000);
      const afterward = await w2.stop();
      rec(`compaction of ${2 * UPDATED} revisions of history (physical)`, "ms", "lower", ms);
      rec("writes during the compaction", "p50 ms", "lower", pct(during, 0.5));
      rec("writes during the compaction", "p99 ms", "lower", pct(during, 0.99));
      rec("writes during the compaction", "max ms", "lower", Math.max(...during));
      rec("writes during the compaction", "count", "info", during.length);
      rec("writes in the 5 s after it returned", "p99 ms", "lower", pct(afterward, 0.99));
      mb("compaction, peak during", mem.peak());
    }, "compaction");
    await step("sizes", () => sizes("after the compaction (no defrag/VACUUM)"), "compaction");
    await sleep(3000);
    mb("end of the run, idle", mem.sample());
    mb("whole run, highest sample (200 ms sampling)", mem.overall);
  } finally {
    mem.stop();
    c.close();
    await t.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- the run

const results = new Results();
const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM`;
const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8", cwd: import.meta.dir }).stdout.trim();
const started = Date.now();
const loadBefore = loadavg()[0]!.toFixed(2);
const targetName = (k: string) => (k === "etcd" ? "etcd" : `strata/${k}`);
const columns = ["etcd", ...TARGETS.filter((k) => k !== "etcd").map(targetName)];
const failed: string[] = [];

function write(): void {
  writeFileSync(values.out!, JSON.stringify({
    date: new Date().toISOString(), machine, commit, loadAverageBefore: loadBefore, minutes: (Date.now() - started) / 60_000,
    sizes: { objects: N, pods: PODS, widgets: WIDGETS, updated: UPDATED, batch: BATCH, clients: CLIENTS, selectorIndex: values.index === "true" }, notes, failed, rows: results.rows,
  }, null, 2));
}

console.log(`scale benchmark: ${N} objects (${PODS} pods as protobuf, ${WIDGETS} custom resources as JSON), targets ${TARGETS.join(", ")}; ${machine}; load average ${loadBefore}`);
for (const kind of TARGETS) {
  const name = targetName(kind);
  console.log(`${name} ...`);
  try {
    await runTarget(kind, (...r) => results.record(name, ...r));
  } catch (err) {
    console.log(`  ${name} failed: ${(err as Error).message}`);
    failed.push(`${name}: ${(err as Error).message}`);
  }
  write();
}
await stopDatabaseServers();

console.log(`\nscale, ${new Date().toISOString().slice(0, 10)} on ${machine} (load average ${loadBefore} before it started; ${((Date.now() - started) / 60_000).toFixed(1)} min; commit ${commit}); client: grpc-js on Bun on the same machine\n`);
console.log(results.table(columns));
for (const n of notes) console.log(`\n${n}`);
console.log(`\n${goals().join("\n")}`);
write();
console.log(`\nresults written to ${values.out}`);
process.exit(0);

/** the issue's goals, each beside the figure it is judged on */
function goals(): string[] {
  const out: string[] = [];
  const verdict = (ok: boolean) => (ok ? "met    " : "missed ");
  for (const t of columns.filter((c) => c !== "etcd")) {
    const v = (workload: string, metric: string) => results.rows.find((r) => r.workload.startsWith(workload) && r.metric === metric)?.values[t];
    const e = (workload: string, metric: string) => results.rows.find((r) => r.workload.startsWith(workload) && r.metric === metric)?.values.etcd;
    const fmt = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(1));
    for (const r of RESOURCES) {
      const sel = results.rows.find((x) => x.workload.startsWith("selected list") && x.workload.includes(r.name) && x.workload.includes("label_selector") && x.metric === "ms (median)");
      const x = sel?.values[t];
      if (x !== undefined) {
        const judged = t === "strata/sqlite" || (t === "strata/routed" && r.name === "pods");
        out.push(`${judged ? verdict(x <= 50) : "report "}  ${t}: selected list of 1% of ${r.count} ${r.name} ≤ 50 ms: ${fmt(x)} ms${t === "strata/routed" && r.name !== "pods" ? " (PostgreSQL)" : ""}`);
      }
      const w = `paginated list of ${r.count} ${r.name}`;
      const worst = Math.max(...["page p99 ms, first 10% of keys", "page p99 ms, middle 10%", "page p99 ms, last 10%"].map((m) => v(w, m) ?? NaN));
      if (!Number.isNaN(worst)) out.push(`${verdict(worst <= 20)}  ${t}: ${r.name} pages (limit 500) ≤ 20 ms p99 at any depth: worst window ${fmt(worst)} ms (etcd ${fmt(Math.max(...["page p99 ms, first 10% of keys", "page p99 ms, middle 10%", "page p99 ms, last 10%"].map((m) => e(w, m) ?? NaN)))} ms)`);
    }
    const idle = v(`${N} objects stored, idle after load`, "server RSS MB");
    if (idle !== undefined) out.push(`${verdict(idle <= 300)}  ${t}: RSS ≤ 300 MB at ${N} objects: ${fmt(idle)} MB (etcd ${fmt(e(`${N} objects stored, idle after load`, "server RSS MB"))} MB)`);
    const peak = v("whole run, highest sample", "server RSS MB");
    if (peak !== undefined) out.push(`${verdict(peak <= 512)}  ${t}: RSS never above 512 MB in any step: highest ${fmt(peak)} MB (etcd ${fmt(e("whole run, highest sample", "server RSS MB"))} MB)`);
    const stream = v(`full list of ${N} through RangeStream, peak during`, "server RSS MB");
    out.push(stream === undefined ? `n/a      ${t}: RangeStream of the whole set with RSS ≤ 512 MB: RangeStream not available` : `${verdict(stream <= 512)}  ${t}: RangeStream of the whole set with RSS ≤ 512 MB: ${fmt(stream)} MB`);
  }
  return out;
}
