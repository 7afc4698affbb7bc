// Differential testing: the same scenario runs against a real etcd and against strata,
// each through a real etcd client, and the normalised answers must be equal. Revisions
// become relative to the revision at the scenario's start, lease IDs become L1, L2, …
// in order of appearance, ids that name the server (cluster, member, raft term) go.
import { afterAll, beforeAll, expect } from "bun:test";
import { Etcd3 } from "etcd3";
import { type EtcdProcess, startEtcd } from "./etcd.ts";
import { startStrata, type StrataProcess } from "./strata.ts";

export interface Side {
  name: "etcd" | "strata";
  endpoint: string;
  client: Etcd3;
  /** strata's /metrics, /readyz and status page base URL */
  metrics?: string;
  /** the end of strata's log */
  stderr?: () => string;
}

export interface Ctx {
  side: Side;
  /** the store's revision when the scenario started */
  base: bigint;
  /** base + n, as the etcd3 client wants revisions */
  rev(n: number): string;
}

/** Starts a real etcd and a strata for the test file; both get the same extra settings. */
export function useServers(opts: { etcdArgs?: string[]; strataArgs?: string[] | (() => Promise<string[]>) } = {}): () => Side[] {
  let etcd: EtcdProcess;
  let strata: StrataProcess;
  let sides: Side[] = [];
  beforeAll(async () => {
    const strataArgs = typeof opts.strataArgs === "function" ? await opts.strataArgs() : opts.strataArgs;
    [etcd, strata] = await Promise.all([startEtcd(opts.etcdArgs), startStrata(strataArgs)]);
    const client = (endpoint: string) => new Etcd3({ hosts: endpoint, grpcOptions: { "grpc.max_receive_message_length": -1 } } as never);
    if (process.env.DIFF_DEBUG) console.log("etcd", etcd.endpoint, "strata", strata.endpoint);
    sides = [
      { name: "etcd", endpoint: etcd.endpoint, client: client(etcd.endpoint) },
      { name: "strata", endpoint: strata.endpoint, client: client(strata.endpoint), metrics: strata.metrics, stderr: () => strata.stderr() },
    ];
  }, 60_000);
  afterAll(async () => {
    if (process.env.DIFF_DEBUG) console.log(strata?.stderr());
    for (const s of sides) s.client.close();
    await Promise.all([etcd?.stop(), strata?.stop()]);
  }, 30_000);
  return () => sides;
}

/** The outcome of one call: its answer, or its gRPC error as "code NAME: message". */
export async function attempt<T>(p: Promise<T> | (() => Promise<T>)): Promise<T | { error: string }> {
  try {
    return await (typeof p === "function" ? p() : p);
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/**
 * Runs the scenario on etcd and on strata and expects equal normalised answers.
 * order: revisions compare by their order among the revisions the answers show, not by
 * distance from the start (strata over several backends numbers revisions sparsely).
 * baseKey: a key in the backend the scenario's keys live in, to read the start revision at.
 */
export async function differential(
  sides: Side[],
  scenario: (c: Etcd3, ctx: Ctx) => Promise<unknown>,
  opts: { order?: boolean; baseKey?: string } = {},
): Promise<unknown> {
  const results: unknown[] = [];
  for (const side of sides) {
    // the revision at the start, read where the scenario's keys live (a strata over
    // several backends with their own revisions has one revision per backend)
    const probe = await side.client.kv.range({ key: Buffer.from(opts.baseKey ?? "\0") } as never);
    const base = BigInt(probe.header.revision);
    const ctx: Ctx = { side, base, rev: (n) => String(base + BigInt(n)) };
    // a scenario that throws is broken on that server: only attempt()ed calls compare errors
    let out: unknown;
    try {
      out = await scenario(side.client, ctx);
    } catch (err) {
      throw new Error(`scenario failed on ${side.name}: ${(err as Error).message}`);
    }
    results.push(normalise(out, base, new Map(), opts.order ? revisionOrder(out, base) : undefined));
  }
  expect(results[1]).toEqual(results[0]);
  return results[0];
}

const RELATIVE = new Set([
  "revision", "create_revision", "mod_revision", "compact_revision", "hash_revision",
  "createRevision", "modRevision", "compactRevision", "hashRevision",
]);
const LEASE_IDS = new Set(["lease", "ID", "id"]);
const isInteger = (v: unknown): v is string | bigint | number => /^-?\d+$/.test(String(v)) && typeof v !== "object";
const SERVER_IDS = new Set([
  "cluster_id", "member_id", "raft_term", "clusterId", "memberId", "raftTerm", "$typeName",
]);

function isBytes(x: unknown): x is Uint8Array | { type: "Buffer"; data: number[] } {
  return x instanceof Uint8Array || (typeof x === "object" && x !== null && (x as { type?: string }).type === "Buffer");
}

/** bytes as text when printable, else as hex */
export function showBytes(b: Uint8Array | { data: number[] }): string {
  const bytes = b instanceof Uint8Array ? b : Uint8Array.from(b.data);
  const printable = bytes.every((c) => c >= 0x20 && c < 0x7f);
  return printable ? Buffer.from(bytes).toString("latin1") : `0x${Buffer.from(bytes).toString("hex")}`;
}

/** every revision the answers show, from the start on, in order: revision → "r<rank>" */
function revisionOrder(x: unknown, base: bigint): Map<bigint, string> {
  const seen = new Set<bigint>([base]);
  const walk = (y: unknown): void => {
    if (isBytes(y) || typeof y !== "object" || y === null) return;
    if (Array.isArray(y)) return y.forEach(walk);
    for (const [k, v] of Object.entries(y)) {
      if (RELATIVE.has(k) && isInteger(v) && BigInt(v) !== 0n) seen.add(BigInt(v));
      else walk(v);
    }
  };
  walk(x);
  const sorted = [...seen].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const start = sorted.indexOf(base);
  return new Map(sorted.map((r, i) => [r, `r${i - start}`]));
}

export function normalise(x: unknown, base: bigint, leases: Map<string, string>, order?: Map<bigint, string>): unknown {
  if (isBytes(x)) return showBytes(x);
  if (typeof x === "bigint") return x.toString();
  if (Array.isArray(x)) return x.map((v) => normalise(v, base, leases, order));
  if (typeof x !== "object" || x === null) return x;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(x)) {
    if (SERVER_IDS.has(k)) continue;
    if (RELATIVE.has(k) && isInteger(v)) {
      const n = BigInt(v);
      out[k] = n === 0n ? 0 : order ? order.get(n) : `base${n - base >= 0n ? "+" : ""}${n - base}`;
    } else if (LEASE_IDS.has(k) && isInteger(v)) {
      const id = BigInt(v);
      if (id === 0n || id === -1n) out[k] = String(id);
      else {
        if (!leases.has(id.toString())) leases.set(id.toString(), `L${leases.size + 1}`);
        out[k] = leases.get(id.toString());
      }
    } else {
      out[k] = normalise(v, base, leases, order);
    }
  }
  return out;
}

export const b = (s: string) => Buffer.from(s);
/** the range_end that covers every key with the prefix */
export function prefixEnd(prefix: string): Buffer {
  const e = Buffer.from(prefix);
  e[e.length - 1]!++;
  return e;
}
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
