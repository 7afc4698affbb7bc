// What the snapshot tests share: a Kubernetes-shaped dataset with leases and history,
// etcdctl's snapshot commands, a real etcd started on a restored data dir, and dumps of
// every key (with revisions, version, lease) and every lease to compare two servers by.
import { spawn, spawnSync } from "node:child_process";
import { Etcd3 } from "etcd3";
import { type EtcdProcess, startEtcd } from "./etcd.ts";

/** etcdctl (v3 API) with its exit status, stdout and stderr */
export function etcdctl(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync("etcdctl", args, { encoding: "utf8", timeout: 120_000, env: { ...process.env, ETCDCTL_API: "3" } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * `etcdctl snapshot save` against endpoint, without blocking this process (its clients
 * keep writing meanwhile); throws with etcdctl's words on failure
 */
export function snapshotSave(endpoint: string, file: string): Promise<void> {
  return new Promise((done, fail) => {
    const p = spawn("etcdctl", ["--endpoints", endpoint, "--command-timeout", "120s", "snapshot", "save", file], { env: { ...process.env, ETCDCTL_API: "3" } });
    let stderr = "";
    p.stderr.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
    p.on("close", (status) => (status === 0 ? done() : fail(new Error(`etcdctl snapshot save failed: ${stderr}`))));
  });
}

export interface SnapshotStatus {
  hash: number;
  revision: number;
  totalKey: number;
  totalSize: number;
}

export function snapshotStatus(file: string): SnapshotStatus {
  const r = etcdctl("snapshot", "status", file, "-w", "json");
  if (r.status !== 0) throw new Error(`etcdctl snapshot status failed: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** `etcdctl snapshot restore` into a fresh data dir, then a real etcd started on it */
export function restoreAndStart(file: string): Promise<EtcdProcess> {
  return startEtcd([], undefined, (data, peerUrl) => {
    const r = etcdctl("snapshot", "restore", file, "--data-dir", data, "--name", "default", "--initial-cluster", `default=${peerUrl}`, "--initial-advertise-peer-urls", peerUrl);
    if (r.status !== 0) throw new Error(`etcdctl snapshot restore failed: ${r.stderr.slice(-2000)}`);
  });
}

interface RawKv {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  lease: string;
}

/** every key at rev (0: latest), one line each: key, create/mod revision, version, lease, value */
export async function dumpKeys(endpoint: string, rev = 0): Promise<string[]> {
  const c = new Etcd3({ hosts: endpoint });
  try {
    const out: string[] = [];
    let key = Buffer.from([0]);
    for (;;) {
      // pages, so a response stays under the client's 4 MiB message limit
      const r = await c.kv.range({ key, range_end: Buffer.from([0]), revision: String(rev), limit: "2000" } as never);
      for (const kv of r.kvs as RawKv[]) {
        out.push(`${kv.key.toString("latin1")} c${kv.create_revision} m${kv.mod_revision} v${kv.version} l${kv.lease} ${kv.value.toString("base64")}`);
      }
      if (!r.more || r.kvs.length === 0) return out;
      key = Buffer.concat([(r.kvs as RawKv[]).at(-1)!.key, Buffer.from([0])]);
    }
  } finally {
    c.close();
  }
}

/** every lease: id, granted TTL and attached keys (the remaining TTL is returned apart: it moves) */
export async function dumpLeases(endpoint: string): Promise<{ leases: string[]; remaining: Map<string, number> }> {
  const c = new Etcd3({ hosts: endpoint });
  try {
    const { leases } = await c.leaseClient.leaseLeases({} as never);
    const out: string[] = [];
    const remaining = new Map<string, number>();
    for (const l of leases as Array<{ ID: string }>) {
      const t = await c.leaseClient.leaseTimeToLive({ ID: l.ID, keys: true } as never);
      const keys = (t.keys as Buffer[]).map((k) => k.toString("latin1")).sort();
      out.push(`${l.ID} ttl${t.grantedTTL} ${keys.join(",")}`);
      remaining.set(l.ID, Number(t.TTL));
    }
    return { leases: out.sort(), remaining };
  } finally {
    c.close();
  }
}

const NAMESPACES = 40;

/** a Kubernetes object's stored shape, roughly: JSON of a few hundred bytes */
function object(kind: string, ns: string, name: string, gen: number): string {
  return JSON.stringify({
    kind,
    apiVersion: "v1",
    metadata: { name, namespace: ns, uid: `${ns}-${name}-uid`, resourceVersion: "0", generation: gen, labels: { app: name.replace(/-\d+$/, ""), tier: "backend" } },
    spec: { containers: [{ name: "main", image: `registry.example/${name}:1.${gen}`, args: ["--flag", "value"] }] },
  });
}

export interface Dataset {
  keys: number;
  leases: string[];
}

/**
 * Writes about `n` keys shaped as Kubernetes stores them (pods, configmaps, secrets,
 * services across namespaces; nodes; events and leases on leases), then history: updates,
 * deletes, and a compaction in the middle. Writes go in txns of 100 puts to be quick.
 */
export async function writeKubernetesDataset(endpoint: string, n: number): Promise<Dataset> {
  const c = new Etcd3({ hosts: endpoint });
  try {
    const puts: Array<{ key: string; value: string; lease?: string }> = [];
    const kinds = ["pods", "configmaps", "secrets", "services"];
    const perKind = Math.floor((n * 0.9) / kinds.length);
    for (const kind of kinds) {
      for (let i = 0; i < perKind; i++) {
        const ns = `ns-${i % NAMESPACES}`;
        puts.push({ key: `/registry/${kind}/${ns}/${kind.slice(0, -1)}-${i}`, value: object(kind, ns, `${kind}-${i}`, 1) });
      }
    }
    for (let i = 0; i < 50; i++) puts.push({ key: `/registry/minions/node-${i}`, value: object("Node", "", `node-${i}`, 1) });
    // events and coordination leases live on leases, as kube-apiserver writes them
    const leaseIds: string[] = [];
    for (let l = 0; l < 5; l++) {
      const g = await c.leaseClient.leaseGrant({ TTL: String(600 + l * 60), ID: "0" } as never);
      leaseIds.push(g.ID);
    }
    const leased = n - puts.length;
    for (let i = 0; i < leased; i++) {
      const lease = leaseIds[i % leaseIds.length]!;
      const key = i % 10 === 0 ? `/registry/leases/kube-node-lease/node-${i}` : `/registry/events/ns-${i % NAMESPACES}/event-${i}`;
      puts.push({ key, value: object("Event", `ns-${i % NAMESPACES}`, `event-${i}`, 1), lease });
    }
    const txn = (ops: typeof puts) =>
      c.kv.txn({ compare: [], success: ops.map((p) => ({ request_put: { key: Buffer.from(p.key), value: Buffer.from(p.value), lease: p.lease ?? "0" } })), failure: [] } as never);
    // txns of 100 puts of one resource (resources may live in different backends), four at a time
    const byResource = new Map<string, typeof puts>();
    for (const p of puts) {
      const r = p.key.split("/")[2]!;
      if (!byResource.has(r)) byResource.set(r, []);
      byResource.get(r)!.push(p);
    }
    const batches = [...byResource.values()].flatMap((ps) => Array.from({ length: Math.ceil(ps.length / 100) }, (_, i) => ps.slice(i * 100, i * 100 + 100)));
    for (let i = 0; i < batches.length; i += 4) await Promise.all(batches.slice(i, i + 4).map(txn));
    // history: updates (some twice), a compaction, more updates and deletes after it
    const pods = puts.filter((p) => p.key.startsWith("/registry/pods/"));
    for (let i = 0; i < 1000; i += 100) await txn(pods.slice(i, i + 100).map((p) => ({ ...p, value: p.value.replace('"generation":1', '"generation":2') })));
    const mid = await c.kv.range({ key: Buffer.from("/"), count_only: true } as never);
    await c.kv.compact({ revision: mid.header.revision } as never);
    for (let i = 0; i < 500; i += 100) await txn(pods.slice(i, i + 100).map((p) => ({ ...p, value: p.value.replace('"generation":1', '"generation":3') })));
    const configmaps = puts.filter((p) => p.key.startsWith("/registry/configmaps/")).slice(0, 300);
    for (const p of configmaps) await c.delete().key(p.key).exec();
    return { keys: puts.length - configmaps.length, leases: leaseIds };
  } finally {
    c.close();
  }
}
