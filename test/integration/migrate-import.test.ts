// strata migrate between two rule sets, and strata import from a live etcd: nothing lost,
// revisions and versions kept, every key where the rules look, counts verified.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Etcd3 } from "etcd3";
import { b, prefixEnd } from "../support/differential.ts";
import { startEtcd } from "../support/etcd.ts";
import { startStrata } from "../support/strata.ts";

const MAIN = join(resolve(import.meta.dir, "../.."), "src/main.ts");
const dir = mkdtempSync(join(tmpdir(), "strata-migrate-"));
const db = (name: string) => `sqlite://${join(dir, name)}`;
const strata = (...args: string[]) =>
  spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", timeout: 120_000, env: { ...process.env, STRATA_CONFIG: "" } });

function config(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** every key with its revisions, version and value, as a client sees them */
async function snapshot(c: Etcd3, prefix: string) {
  const r = await c.kv.range({ key: b(prefix), range_end: prefixEnd(prefix) } as never);
  return r.kvs.map((kv: { key: Buffer; value: Buffer; create_revision: string; mod_revision: string; version: string }) =>
    `${kv.key}@${kv.create_revision}/${kv.mod_revision}/v${kv.version}=${kv.value}`
  );
}

describe("moving keys between backends", () => {
  test("migrate: keys change backend with their revisions; strata then serves them under the new rules", async () => {
    const oldRules = config("old.yaml", `backends:\n  main: ${db("m.db")}\n  side: ${db("s.db")}\ndefault: main\nroutes:\n  - match: { resource: events }\n    backend: side\n`);
    const newRules = config("new.yaml", `backends:\n  main: ${db("m.db")}\n  side: ${db("s.db")}\ndefault: main\nroutes:\n  - match: { resource: events }\n    backend: side\n  - match: { namespace: "team-*" }\n    backend: side\n  - match: { resource: secrets }\n    backend: side\n`);
    const s1 = await startStrata(["--config", oldRules]);
    const c1 = new Etcd3({ hosts: s1.endpoint });
    for (let i = 0; i < 40; i++) await c1.put(`/registry/pods/${i % 2 ? "team-a" : "default"}/p${i}`).value(`v${i}`);
    for (let i = 0; i < 10; i++) await c1.put(`/registry/pods/team-a/p${i}`).value(`v${i}-2`);
    for (let i = 0; i < 5; i++) await c1.put(`/registry/events/default/e${i}`).value("e");
    const before = await snapshot(c1, "/registry/");
    c1.close();
    await s1.stop();

    const m = strata("migrate", "--from-config", oldRules, "--to-config", newRules);
    expect(m.stderr).toContain("25 of 50 keys change backend");
    expect(m.stderr).toContain("25/25 keys moved");
    expect(m.stderr).toContain("done: 25 keys moved, 50 keys in all (main=20, side=30)");
    expect(m.status).toBe(0);
    // a second run finds nothing to do
    expect(strata("migrate", "--from-config", oldRules, "--to-config", newRules).stderr).toContain("0 of 50 keys change backend");

    const s2 = await startStrata(["--config", newRules]);
    const c2 = new Etcd3({ hosts: s2.endpoint });
    try {
      expect(await snapshot(c2, "/registry/")).toEqual(before);
      // writes continue above every migrated revision
      const r = await c2.put("/registry/pods/team-a/p1").value("after").exec();
      const newest = Math.max(...before.map((l: string) => Number(/\/(\d+)\/v/.exec(l)![1])));
      expect(Number(r.header.revision)).toBeGreaterThan(newest);
    } finally {
      c2.close();
      await s2.stop();
    }
  });

  test("import: a live etcd's keys, revisions and leases land in the routed backends", async () => {
    const etcd = await startEtcd();
    const e = new Etcd3({ hosts: etcd.endpoint });
    const rules = config("import.yaml", `backends:\n  main: ${db("im.db")}\n  ev: ${db("ie.db")}\ndefault: main\nroutes:\n  - match: { resource: events }\n    backend: ev\n`);
    try {
      const lease = e.lease(300, { autoKeepAlive: false });
      const leaseId = await lease.grant();
      for (let i = 0; i < 30; i++) await e.put(`/registry/configmaps/default/c${i}`).value(`v${i}`);
      for (let i = 0; i < 12; i++) await lease.put(`/registry/events/default/e${i}`).value("ev");
      await e.put("/registry/configmaps/default/c3").value("v3-2");
      await e.delete().key("/registry/configmaps/default/c4");
      const want = await snapshot(e, "/registry/");
      const r = strata("import", "--from", `http://${etcd.endpoint}`, "--config", rules);
      expect(r.stderr).toContain(`done: 41 keys, 1 leases`);
      expect(r.stderr).toContain("(main=29, ev=12)");
      expect(r.status).toBe(0);
      const s = await startStrata(["--config", rules]);
      const c = new Etcd3({ hosts: s.endpoint });
      try {
        expect(await snapshot(c, "/registry/")).toEqual(want);
        const ttl = await c.leaseClient.leaseTimeToLive({ ID: leaseId, keys: true } as never);
        expect(Number(ttl.TTL)).toBeGreaterThan(200);
        expect(ttl.keys.length).toBe(12);
        const status = await c.maintenance.status();
        const etcdStatus = await e.maintenance.status();
        expect(BigInt(status.header.revision)).toBeGreaterThanOrEqual(BigInt(etcdStatus.header.revision));
      } finally {
        c.close();
        await s.stop();
      }
    } finally {
      e.close();
      await etcd.stop();
    }
  });
});
