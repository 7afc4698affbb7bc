// strata → etcd: `etcdctl snapshot save` against strata writes etcd's own snapshot file;
// `etcdctl snapshot status` reads it and `etcdctl snapshot restore` makes a data dir from
// which a real etcd serves every key, value, create/mod revision, version and lease strata
// served at the snapshot's revision — on the backend under test (SQLite by default,
// PostgreSQL in the postgres run), and for a routing config of SQLite + PostgreSQL +
// MariaDB. A snapshot taken while writers run is one revision, and writers keep going.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { BACKEND, freshDatabase, startStrata } from "../support/strata.ts";
import { writeConfig } from "../support/cli.ts";
import { dumpKeys, dumpLeases, restoreAndStart, snapshotSave, snapshotStatus, writeKubernetesDataset } from "../support/snapshot.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-snapshot-save-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** snapshot strata at endpoint, restore it into a real etcd, compare everything */
async function roundTrip(endpoint: string, file: string, expectedKeys: number) {
  const before = await dumpKeys(endpoint);
  const leasesBefore = await dumpLeases(endpoint);
  expect(before.length).toBe(expectedKeys);
  await snapshotSave(endpoint, file);
  const status = snapshotStatus(file);
  // the newest revision a key carries (what etcd's status reports)
  const newest = Math.max(...before.map((l) => Number(/ m(\d+) /.exec(l)![1])));
  expect(status.revision).toBeGreaterThanOrEqual(newest);
  expect(status.totalKey).toBeGreaterThan(expectedKeys);
  const etcd = await restoreAndStart(file);
  try {
    expect(await dumpKeys(etcd.endpoint)).toEqual(before);
    const leasesAfter = await dumpLeases(etcd.endpoint);
    expect(leasesAfter.leases).toEqual(leasesBefore.leases);
    // a restored lease keeps about the time it had left, never more than its TTL
    for (const [id, left] of leasesAfter.remaining) {
      expect(left).toBeLessThanOrEqual(leasesBefore.remaining.get(id)! + 1);
      expect(left).toBeGreaterThan(leasesBefore.remaining.get(id)! - 60);
    }
  } finally {
    await etcd.stop();
  }
  return status;
}

describe("strata → etcd snapshot → etcd", () => {
  test("a Kubernetes-shaped keyspace of 20,000 keys with leases and history restores into a real etcd as strata served it", async () => {
    const s = await startStrata();
    try {
      const data = await writeKubernetesDataset(s.endpoint, 20_000);
      const status = await roundTrip(s.endpoint, join(dir, "single.db"), data.keys);
      expect(s.stderr()).toContain('"msg":"snapshot: written"');
      expect(status.totalSize).toBeGreaterThan(5_000_000);
    } finally {
      await s.stop();
    }
  });

  // names its own backends: run once (in the SQLite run)
  test.if(BACKEND === "sqlite")("a routing config of SQLite, PostgreSQL and MariaDB: one snapshot of all three at one revision", async () => {
    const config = writeConfig(dir, "routed.yaml", [
      "backends:",
      `  main: ${await freshDatabase("sqlite", dir)}`,
      `  events: ${await freshDatabase("postgres", dir)}`,
      `  secrets: ${await freshDatabase("mariadb", dir)}`,
      "default: main",
      "routes:",
      "  - match: { resource: events }",
      "    backend: events",
      "  - match: { resource: secrets }",
      "    backend: secrets",
    ]);
    const s = await startStrata(["--config", config]);
    try {
      const data = await writeKubernetesDataset(s.endpoint, 20_000);
      await roundTrip(s.endpoint, join(dir, "routed.db"), data.keys);
    } finally {
      await s.stop();
    }
  });

  test("a compaction during the snapshot removes no history it reads: deleted keys stay deleted", async () => {
    const s = await startStrata();
    const c = new Etcd3({ hosts: s.endpoint });
    try {
      const data = await writeKubernetesDataset(s.endpoint, 20_000);
      // deletions whose tombstones a compaction past them removes, after the older versions
      await c.delete().prefix("/registry/secrets/").exec();
      await c.put("/registry/configmaps/ns-0/last").value("x").exec();
      const want = await dumpKeys(s.endpoint);
      expect(want.length).toBeLessThan(data.keys);
      const file = join(dir, "compacting.db");
      const saving = snapshotSave(s.endpoint, file);
      while (!s.stderr().includes("snapshot: started")) await new Promise((r) => setTimeout(r, 2));
      const now = await c.get("/registry/configmaps/ns-0/last").exec();
      await c.kv.compact({ revision: now.header.revision, physical: true } as never);
      await saving;
      const etcd = await restoreAndStart(file);
      try {
        expect(await dumpKeys(etcd.endpoint)).toEqual(want);
      } finally {
        await etcd.stop();
      }
    } finally {
      c.close();
      await s.stop();
    }
  });

  test("a snapshot taken while writers run is one revision of the keyspace, and the writers keep their pace", async () => {
    const s = await startStrata();
    const c = new Etcd3({ hosts: s.endpoint });
    try {
      await writeKubernetesDataset(s.endpoint, 20_000);
      let running = true;
      const latencies: number[] = [];
      const during: number[] = [];
      let saving = false;
      const writer = async (w: number) => {
        for (let i = 0; running; i++) {
          const t = performance.now();
          await c.put(`/registry/configmaps/writer-${w}/cm-${i % 200}`).value(`v${i}`).exec();
          (saving ? during : latencies).push(performance.now() - t);
        }
      };
      const writers = [0, 1, 2, 3].map(writer);
      await new Promise((r) => setTimeout(r, 1000));
      saving = true;
      const file = join(dir, "busy.db");
      const t0 = performance.now();
      await snapshotSave(s.endpoint, file);
      const saveMs = performance.now() - t0;
      await new Promise((r) => setTimeout(r, 300));
      saving = false;
      await new Promise((r) => setTimeout(r, 500));
      running = false;
      await Promise.all(writers);
      const status = snapshotStatus(file);
      const p = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * q)] ?? 0;
      console.log(`snapshot under load: ${saveMs.toFixed(0)} ms; put latency before/after p50 ${p(latencies, 0.5).toFixed(1)} ms p99 ${p(latencies, 0.99).toFixed(1)} ms (${latencies.length} puts), during p50 ${p(during, 0.5).toFixed(1)} ms p99 ${p(during, 0.99).toFixed(1)} ms max ${Math.max(...during).toFixed(1)} ms (${during.length} puts)`);
      // writers were not stopped: they wrote while the snapshot was taken
      expect(during.length).toBeGreaterThan(10);
      // the restored etcd holds exactly strata's keyspace at the snapshot's revision
      const want = await dumpKeys(s.endpoint, status.revision);
      const etcd = await restoreAndStart(file);
      try {
        expect(await dumpKeys(etcd.endpoint)).toEqual(want);
      } finally {
        await etcd.stop();
      }
      // a generous bound: the machine is shared; the figures above are the report
      expect(p(during, 0.99)).toBeLessThan(Math.max(250, p(latencies, 0.99) * 10));
    } finally {
      c.close();
      await s.stop();
    }
  });
});
