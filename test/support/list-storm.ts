// The list storm of issue 13: many concurrent full lists of a large prefix while one
// client (its own process) puts every 50 ms, as when every informer of a restarted
// kube-apiserver lists at once. Measures how long the lists take, the worst put, and the
// server's peak memory.
import { Etcd3 } from "etcd3";
import { serverMemory } from "../../scripts/bench/measure.ts";
import { startPutter } from "./putter-process.ts";

export interface StormSizes {
  keys: number;
  valueBytes: number;
  lists: number;
}

export interface StormResult {
  /** keys each list returned */
  counts: number[];
  listSeconds: number;
  /** the slowest put while the lists ran, and the puts made then */
  worstPutMs: number;
  puts: number;
  /** the server's resident memory before the lists, and its peak over its life, MiB */
  rssBeforeMiB: number;
  peakRssMiB: number;
}

const PREFIX = "/registry/storm/";
const END = Buffer.from("/registry/storm0");

/** Writes the keys `s` describes (100 writers at once). */
export async function loadStorm(endpoint: string, s: StormSizes): Promise<void> {
  const c = new Etcd3({ hosts: endpoint });
  const value = Buffer.alloc(s.valueBytes, 120);
  let next = 0;
  await Promise.all(Array.from({ length: 100 }, async () => {
    while (next < s.keys) await c.put(`${PREFIX}${String(next++).padStart(6, "0")}`).value(value).exec();
  }));
  c.close();
}

export async function listStorm(endpoint: string, s: StormSizes): Promise<StormResult> {
  const rssBeforeMiB = serverMemory(endpoint).rss;
  const putter = startPutter(endpoint);
  await putter.steady();
  // lists far above grpc-js's 4 MiB default; each its own connection, as informers of
  // separate clients would be
  const clients = Array.from({ length: s.lists }, () => new Etcd3({ hosts: endpoint, grpcOptions: { "grpc.max_receive_message_length": -1 } }));
  const started = performance.now();
  const counts = await Promise.all(clients.map(async (c) => (await c.kv.range({ key: Buffer.from(PREFIX), range_end: END })).kvs.length));
  const listSeconds = (performance.now() - started) / 1000;
  const latencies = await putter.stop();
  for (const c of clients) c.close();
  return { counts, listSeconds, worstPutMs: Math.max(...latencies), puts: latencies.length, rssBeforeMiB, peakRssMiB: serverMemory(endpoint).peak };
}
