// The Kubernetes-shaped workloads, run in order against one server (etcd or strata)
// with the etcd3 client. Each reports its figures through `record`.
import { spawnSync } from "node:child_process";
import { Etcd3, type IRangeResponse, type ITxnResponse } from "etcd3";
import { drive, median, pct, serverMemory, sleep } from "./measure.ts";

export interface Sizes {
  /** objects created, and the size of the listed prefix */
  objects: number;
  /** keys the guarded updates go to */
  hot: number;
  updates: number;
  gets: number;
  /** concurrent client loops for creates, updates and gets */
  clients: number;
  watchers: number;
  /** distinct prefixes the watchers watch */
  watchPrefixes: number;
  /** writes per second while watchers listen */
  watchRate: number;
  watchSeconds: number;
  leases: number;
  leaseTtl: number;
  /** keys stored when memory is measured */
  totalKeys: number;
  /** the load `etcdctl check perf` runs (s, m, l, xl), or undefined to skip it */
  checkPerfLoad: string | undefined;
}

/** which way is better; "info" rows are shown apart and judged by no goal */
export type Better = "higher" | "lower" | "info";
export type Record = (workload: string, metric: string, better: Better, value: number) => void;

const PODS = "/registry/pods/";
const prefixEnd = (p: string) => Buffer.from(p.slice(0, -1) + String.fromCharCode(p.charCodeAt(p.length - 1) + 1));
/** a pod-sized value of 1–4 KiB */
const value = (i: number) => Buffer.alloc(1024 + (i * 997) % 3072, 97 + (i % 26));
const podKey = (i: number) => Buffer.from(`${PODS}ns-${i % 50}/pod-${String(i).padStart(7, "0")}`);

function client(endpoint: string): Etcd3 {
  // lists of 50,000 pods are far above grpc-js's 4 MiB default
  return new Etcd3({ hosts: endpoint, grpcOptions: { "grpc.max_receive_message_length": -1 } });
}

export async function runWorkloads(endpoint: string, s: Sizes, record: Record): Promise<void> {
  const c = client(endpoint);
  try {
    const empty = serverMemory(endpoint).rss;
    const modRevisions = await create(c, s, record);
    await guardedUpdates(c, s, modRevisions, record);
    await pointGets(c, s, record);
    await lists(c, s, record);
    await countOnly(c, s, record);
    await watchDelivery(endpoint, c, s, record);
    await leaseChurn(c, s, record);
    await fill(c, s);
    await memory(endpoint, c, s, record);
    record("empty server, idle", "server RSS MiB", "info", empty);
    if (s.checkPerfLoad) await checkPerf(endpoint, s.checkPerfLoad, record);
  } finally {
    c.close();
  }
}

/** 1. creates through the create txn kube-apiserver sends; returns each key's mod_revision */
async function create(c: Etcd3, s: Sizes, record: Record): Promise<string[]> {
  const mods: string[] = [];
  const r = await drive(s.objects, s.clients, async (i) => {
    const key = podKey(i);
    const res: ITxnResponse = await c.kv.txn({
      compare: [{ key, target: "Mod", result: "Equal", mod_revision: "0" }],
      success: [{ request_put: { key, value: value(i) } }],
      failure: [{ request_range: { key } }],
    });
    if (!res.succeeded) throw new Error(`create of ${key} found the key already there`);
    mods[i] = res.header.revision;
  });
  const name = `create ${s.objects} (txn, ${s.clients} clients)`;
  record(name, "ops/s", "higher", r.rate);
  record(name, "p50 ms", "lower", pct(r.lat, 0.5));
  record(name, "p99 ms", "lower", pct(r.lat, 0.99));
  return mods;
}

/**
 * 2. guarded updates as kube-apiserver makes them: compare the mod_revision it last saw,
 * and on a conflict take the current object from the failure branch and try again.
 */
async function guardedUpdates(c: Etcd3, s: Sizes, mods: string[], record: Record): Promise<void> {
  const hot = Math.min(s.hot, s.objects);
  let conflicts = 0;
  const r = await drive(s.updates, s.clients, async (i) => {
    const k = i % hot;
    const key = podKey(k);
    for (;;) {
      const res: ITxnResponse = await c.kv.txn({
        compare: [{ key, target: "Mod", result: "Equal", mod_revision: mods[k]! }],
        success: [{ request_put: { key, value: value(i + 1) } }],
        failure: [{ request_range: { key } }],
      });
      if (res.succeeded) {
        mods[k] = res.header.revision;
        return;
      }
      conflicts++;
      mods[k] = (res.responses[0]!.response_range as IRangeResponse).kvs[0]!.mod_revision;
    }
  });
  const name = `guarded update, ${hot} hot keys (${s.clients} clients)`;
  record(name, "ops/s", "higher", r.rate);
  record(name, "p50 ms", "lower", pct(r.lat, 0.5));
  record(name, "p99 ms", "lower", pct(r.lat, 0.99));
  if (conflicts > 0) console.log(`  guarded updates: ${conflicts} conflicts retried`);
}

/** 3. point gets of random stored objects */
async function pointGets(c: Etcd3, s: Sizes, record: Record): Promise<void> {
  const r = await drive(s.gets, s.clients, (i) => c.kv.range({ key: podKey((i * 7919) % s.objects) }));
  const name = `point get (${s.clients} clients)`;
  record(name, "ops/s", "higher", r.rate);
  record(name, "p50 ms", "lower", pct(r.lat, 0.5));
  record(name, "p99 ms", "lower", pct(r.lat, 0.99));
}

/** 4. the whole prefix: pages of 500 at the first page's revision (as the apiserver pages), and in one piece */
async function lists(c: Etcd3, s: Sizes, record: Record): Promise<void> {
  const end = prefixEnd(PODS);
  const paged: number[] = [];
  const whole: number[] = [];
  for (let run = 0; run < 3; run++) {
    let t = performance.now();
    let start = Buffer.from(PODS);
    let revision = "0";
    let seen = 0;
    for (;;) {
      const page = await c.kv.range({ key: start, range_end: end, limit: 500, revision });
      if (revision === "0") revision = page.header.revision;
      seen += page.kvs.length;
      if (!page.more) break;
      start = Buffer.concat([page.kvs.at(-1)!.key, Buffer.from([0])]);
    }
    paged.push(performance.now() - t);
    if (seen !== s.objects) throw new Error(`paginated list saw ${seen} keys, expected ${s.objects}`);
    t = performance.now();
    const all = await c.kv.range({ key: Buffer.from(PODS), range_end: end });
    whole.push(performance.now() - t);
    if (all.kvs.length !== s.objects) throw new Error(`full list returned ${all.kvs.length} keys, expected ${s.objects}`);
  }
  record(`paginated list of ${s.objects} (limit 500)`, "ms", "lower", median(paged));
  record(`full list of ${s.objects}`, "ms", "lower", median(whole));
}

/** 5. count_only over the prefix, as the apiserver's object-count metric asks */
async function countOnly(c: Etcd3, s: Sizes, record: Record): Promise<void> {
  const end = prefixEnd(PODS);
  const times: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    const r = await c.kv.range({ key: Buffer.from(PODS), range_end: end, count_only: true });
    times.push(performance.now() - t);
    if (Number(r.count) !== s.objects) throw new Error(`count_only said ${r.count}, expected ${s.objects}`);
  }
  record(`count_only of ${s.objects}`, "ms", "lower", median(times));
}

/**
 * 6. watchers as several API servers hold them: five clients, each watching every
 * prefix, while writes go to the prefixes in turn at a steady rate; the time from
 * sending a write to each watcher seeing it.
 */
async function watchDelivery(endpoint: string, writer: Etcd3, s: Sizes, record: Record): Promise<void> {
  const servers = Math.max(1, Math.round(s.watchers / s.watchPrefixes));
  const prefix = (p: number) => `/registry/bench${String(p).padStart(3, "0")}/`;
  const sent = new Map<number, number>();
  const delays: number[] = [];
  const watchers = Array.from({ length: servers }, () => client(endpoint));
  const handles = await Promise.all(watchers.flatMap((w) =>
    Array.from({ length: s.watchPrefixes }, async (_, p) => {
      const h = await w.watch().prefix(prefix(p)).create();
      h.on("put", (kv) => {
        const at = sent.get(Number(kv.key.toString().split("/e").at(-1)));
        if (at !== undefined) delays.push(performance.now() - at);
      });
      return h;
    })
  ));
  const total = Math.round(s.watchRate * s.watchSeconds);
  const payload = Buffer.alloc(1024, 120);
  const t0 = performance.now();
  const inFlight: Promise<unknown>[] = [];
  for (let i = 0; i < total; i++) {
    // open loop: the i-th write leaves at its time whether or not earlier ones returned
    const due = t0 + (i * 1000) / s.watchRate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    sent.set(i, performance.now());
    inFlight.push(writer.put(`${prefix(i % s.watchPrefixes)}default/e${i}`).value(payload).exec());
  }
  await Promise.all(inFlight);
  const expected = total * servers;
  const deadline = performance.now() + 10_000;
  while (delays.length < expected && performance.now() < deadline) await sleep(50);
  await Promise.all(handles.map((h) => h.cancel()));
  for (const w of watchers) w.close();
  const name = `watch delivery, ${servers * s.watchPrefixes} watchers, ${s.watchRate} writes/s`;
  record(name, "p50 ms", "lower", pct(delays, 0.5));
  record(name, "p99 ms", "lower", pct(delays, 0.99));
  if (delays.length < expected) console.log(`  watch: ${expected - delays.length} of ${expected} events not delivered within 10 s`);
}

/**
 * 7. lease churn: keys attached to leases (Kubernetes events carry them) expire all at
 * once while creates go on; how late past its TTL each key's deletion is seen, and how
 * the writes fare meanwhile.
 */
async function leaseChurn(c: Etcd3, s: Sizes, record: Record): Promise<void> {
  const prefix = "/registry/events/";
  const deadlines = new Map<string, number>();
  const lags: number[] = [];
  const w = await c.watch().prefix(prefix).create();
  w.on("delete", (kv) => {
    const due = deadlines.get(kv.key.toString());
    if (due !== undefined) lags.push(performance.now() - due);
  });
  await drive(s.leases, s.clients, async (i) => {
    const key = `${prefix}ns-${i % 50}/event-${i}`;
    const grant = await c.leaseClient.leaseGrant({ TTL: s.leaseTtl, ID: 0 });
    deadlines.set(key, performance.now() + s.leaseTtl * 1000);
    await c.kv.put({ key: Buffer.from(key), value: value(i), lease: grant.ID });
  });
  // writes go on through the expiry, at a steady 500/s from 16 loops
  const writes: number[] = [];
  let stop = false;
  let n = 0;
  const writing = Promise.all(Array.from({ length: 16 }, async () => {
    while (!stop) {
      const i = n++;
      const t = performance.now();
      await c.kv.put({ key: Buffer.from(`/registry/configmaps/churn/cm-${i % 1000}`), value: value(i) });
      writes.push(performance.now() - t);
      await sleep(Math.max(0, 32 - (performance.now() - t)));
    }
  }));
  const deadline = performance.now() + s.leaseTtl * 1000 + 15_000;
  while (lags.length < s.leases && performance.now() < deadline) await sleep(100);
  stop = true;
  await writing;
  await w.cancel();
  const name = `lease churn, ${s.leases} keys on ${s.leaseTtl} s leases`;
  record(name, "expiry lag p50 ms", "lower", pct(lags, 0.5));
  record(name, "expiry lag p99 ms", "lower", pct(lags, 0.99));
  record(name, "write p99 ms", "lower", pct(writes, 0.99));
  if (lags.length < s.leases) console.log(`  leases: ${s.leases - lags.length} of ${s.leases} keys still there 15 s past their TTL`);
}

/**
 * 8. memory with totalKeys stored: idle (after a few quiet seconds), and the most it
 * reaches while 64 clients get and update pods for five seconds; and its peak over the run.
 */
async function memory(endpoint: string, c: Etcd3, s: Sizes, record: Record): Promise<void> {
  await sleep(3000);
  record(`${s.totalKeys} keys stored, idle`, "server RSS MiB", "lower", serverMemory(endpoint).rss);
  let loaded = 0;
  let busy = true;
  const sampling = (async () => {
    while (busy) {
      loaded = Math.max(loaded, serverMemory(endpoint).rss);
      await sleep(100);
    }
  })();
  const until = performance.now() + 5000;
  await Promise.all(Array.from({ length: s.clients }, async (_, n) => {
    for (let i = n; performance.now() < until; i += s.clients) {
      const key = podKey((i * 7919) % s.objects);
      if (i % 2 === 0) await c.kv.range({ key });
      else await c.kv.put({ key, value: value(i) });
    }
  }));
  busy = false;
  await sampling;
  record(`${s.totalKeys} keys stored, under load`, "server RSS MiB", "lower", loaded);
  record("whole run", "peak server RSS MiB", "lower", serverMemory(endpoint).peak);
}

/** more objects (config maps) until the store holds totalKeys */
async function fill(c: Etcd3, s: Sizes): Promise<void> {
  const all = await c.kv.range({ key: Buffer.from([0]), range_end: Buffer.from([0]), count_only: true });
  const more = Math.max(0, s.totalKeys - Number(all.count));
  await drive(more, s.clients, (i) =>
    c.kv.put({ key: Buffer.from(`/registry/configmaps/ns-${i % 50}/cm-${String(i).padStart(7, "0")}`), value: value(i) }));
}

/**
 * 9. etcd's own acceptance check: `etcdctl check perf` writes at the load's rate for 60 s
 * and passes when at least 90% of that rate is reached, the slowest write took under
 * 500 ms and the latencies' standard deviation is under 100 ms.
 */
async function checkPerf(endpoint: string, load: string, record: Record): Promise<void> {
  const run = spawnSync("etcdctl", ["--endpoints", endpoint, "check", "perf", `--load=${load}`], {
    env: { ...process.env, ETCDCTL_API: "3" },
    encoding: "utf8",
    timeout: 180_000,
  });
  const out = `${run.stdout}\n${run.stderr}`;
  const figure = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const name = `etcdctl check perf --load=${load}`;
  record(name, "writes/s", "higher", figure(/Throughput (?:is|too low:) (\d+) writes\/s/));
  record(name, "slowest ms", "lower", figure(/Slowest request took (?:too long: )?([\d.]+)s/) * 1000);
  record(name, "stddev ms", "lower", figure(/Stddev (?:is|too high:) ([\d.]+)s/) * 1000);
  const passed = /^PASS$/m.test(out) && !/^FAIL/m.test(out);
  record(name, "passed (1 yes, 0 no)", "info", passed ? 1 : 0);
  if (!passed) console.log(`  ${name} did not pass:\n${out.split("\n").filter((l) => /PASS|FAIL|too long|too high|Error|error/.test(l)).join("\n")}`);
}
