// etcd → strata: `etcdctl snapshot save` against a real etcd, then `strata import
// --from-snapshot FILE` into a routing config; strata then serves every key, value,
// create/mod revision, version and lease etcd served, and continues above its revision.
// A strata snapshot imports too. Bad files are refused with one line naming the file and
// what is wrong, before any backend is opened.
import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { Etcd3 } from "etcd3";
import { KeyValueSchema } from "../../src/gen/etcd/api/mvccpb/kv_pb.ts";
import { BoltWriter } from "../../src/snapshot/bbolt-writer.ts";
import { revisionKey } from "../../src/snapshot/etcd-layout.ts";
import { startEtcd } from "../support/etcd.ts";
import { strataCli, writeConfig } from "../support/cli.ts";
import { startStrata } from "../support/strata.ts";
import { dumpKeys, dumpLeases, snapshotSave, writeKubernetesDataset } from "../support/snapshot.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-snapshot-import-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function routedConfig(name: string): { path: string; dbs: string[] } {
  const dbs = [join(dir, `${name}-main.db`), join(dir, `${name}-events.db`)];
  const path = writeConfig(dir, `${name}.yaml`, [
    "backends:",
    `  main: sqlite://${dbs[0]}`,
    `  events: sqlite://${dbs[1]}`,
    "default: main",
    "routes:",
    "  - match: { resource: events }",
    "    backend: events",
  ]);
  return { path, dbs };
}

/** a bbolt file holding etcd's buckets as given (name → entries), with the sha256 trailer */
async function craft(name: string, buckets: Record<string, Array<[Uint8Array, Uint8Array]>>): Promise<string> {
  const path = join(dir, name);
  const f = await open(path, "w+");
  const w = await BoltWriter.create(f);
  const done = [];
  for (const [b, entries] of Object.entries(buckets)) {
    const bw = w.bucket();
    for (const [k, v] of entries) await bw.put(k, v);
    done.push({ name: new TextEncoder().encode(b), value: (await bw.finish()).value });
  }
  await w.close(done);
  await f.close();
  appendFileSync(path, createHash("sha256").update(readFileSync(path)).digest());
  return path;
}

const te = new TextEncoder();
const oneKey = (): Array<[Uint8Array, Uint8Array]> => [[revisionKey(2n, 0n), toBinary(KeyValueSchema, create(KeyValueSchema, { key: te.encode("/registry/a"), value: te.encode("v"), createRevision: 2n, modRevision: 2n, version: 1n }))]];

describe("etcd snapshot → strata import", () => {
  let good = "";

  test("a real etcd's snapshot of 20,000 Kubernetes-shaped keys imports into routed backends as etcd served them", async () => {
    const etcd = await startEtcd();
    const { path: config } = routedConfig("im");
    let want: string[], wantLeases: Awaited<ReturnType<typeof dumpLeases>>;
    try {
      await writeKubernetesDataset(etcd.endpoint, 20_000);
      want = await dumpKeys(etcd.endpoint);
      wantLeases = await dumpLeases(etcd.endpoint);
      good = join(dir, "etcd.db");
      await snapshotSave(etcd.endpoint, good);
    } finally {
      await etcd.stop();
    }
    const r = await strataCli("import", "--from-snapshot", good, "--config", config);
    expect(r.stderr).toContain(`strata import: ${want.length} keys at revision`);
    expect(r.stderr).toContain("sha256 checked");
    expect(r.stderr).toMatch(new RegExp(`done: ${want.length} keys, 5 leases, revision \\d+ \\(main=\\d+, events=\\d+\\)`));
    expect(r.status).toBe(0);
    // a second run finds every key in place and changes nothing
    const again = await strataCli("import", "--from-snapshot", good, "--config", config);
    expect(again.stderr).toContain(`done: ${want.length} keys`);

    const s = await startStrata(["--config", config]);
    const c = new Etcd3({ hosts: s.endpoint });
    try {
      expect(await dumpKeys(s.endpoint)).toEqual(want);
      const got = await dumpLeases(s.endpoint);
      expect(got.leases).toEqual(wantLeases.leases);
      for (const [id, left] of got.remaining) expect(left).toBeGreaterThan(wantLeases.remaining.get(id)! - 60);
      // writes continue above every imported revision
      const newest = Math.max(...want.map((l) => Number(/ m(\d+) /.exec(l)![1])));
      const put = await c.put("/registry/configmaps/ns-1/after").value("x").exec();
      expect(Number(put.header.revision)).toBeGreaterThan(newest);
    } finally {
      c.close();
      await s.stop();
    }
  });

  test("a strata snapshot imports into another strata", async () => {
    const s1 = await startStrata();
    let want: string[];
    const file = join(dir, "strata.db");
    try {
      await writeKubernetesDataset(s1.endpoint, 3000);
      want = await dumpKeys(s1.endpoint);
      await snapshotSave(s1.endpoint, file);
    } finally {
      await s1.stop();
    }
    const { path: config } = routedConfig("again");
    const r = await strataCli("import", "--from-snapshot", file, "--config", config);
    expect(r.status).toBe(0);
    const s2 = await startStrata(["--config", config]);
    try {
      expect(await dumpKeys(s2.endpoint)).toEqual(want);
    } finally {
      await s2.stop();
    }
  });

  describe("bad files: one line naming the file and what is wrong, nothing written", () => {
    const cases: Array<[string, () => Promise<string>, RegExp]> = [
      ["a truncated snapshot", async () => {
        const p = join(dir, "truncated.db");
        writeFileSync(p, readFileSync(good).subarray(0, 200_000));
        return p;
      }, /truncated: the database needs \d+ pages of 4096 bytes, the file holds 200000 bytes; nothing imported$/],
      ["a snapshot whose hash does not match", async () => {
        const p = join(dir, "altered.db");
        const b = Buffer.from(readFileSync(good));
        b[b.length - 5000] = b[b.length - 5000]! ^ 0xff;
        writeFileSync(p, b);
        return p;
      }, /sha256 mismatch: the file records [0-9a-f]{64}, its contents hash to [0-9a-f]{64} \(damaged or altered\); nothing imported$/],
      ["a file that is not bbolt", async () => {
        const p = join(dir, "text.db");
        writeFileSync(p, "not a database\n".repeat(1000));
        return p;
      }, /not an etcd snapshot: not a bbolt database \(no bbolt magic number\); nothing imported$/],
      ["a bbolt file that is not etcd's", async () => craft("other.db", { widgets: [] }), /not an etcd snapshot: a bbolt database without etcd's key and meta buckets \(it has widgets\); nothing imported$/],
      ["a snapshot from a newer etcd storage schema", async () => craft("newer.db", { key: oneKey(), meta: [[te.encode("storageVersion"), te.encode("3.7.0")]] }), /written with etcd storage schema 3\.7\.0, newer than the 3\.6 strata reads; .*nothing imported$/],
      ["a key bucket entry that is not a revision", async () => craft("badkey.db", { key: [[te.encode("hello"), te.encode("x")]], meta: [] }), /the key bucket holds 68656c6c6f, which is not a revision; nothing imported$/],
      ["a missing file", async () => join(dir, "nope.db"), /cannot open: ENOENT$/],
    ];
    for (const [name, make, message] of cases) {
      test(name, async () => {
        const file = await make();
        const db = join(dir, `bad-${name.replace(/\W+/g, "-")}.db`);
        const r = await strataCli("import", "--from-snapshot", file, "--backend", `sqlite://${db}`);
        const lines = r.stderr.trim().split("\n");
        expect(lines).toHaveLength(1);
        expect(lines[0]!).toStartWith(`strata import: ${file}: `);
        expect(lines[0]!).toMatch(message);
        expect(r.status).toBe(1);
        expect(existsSync(db)).toBe(false);
      });
    }
  });

  test("etcd itself refuses what strata refuses: a snapshot whose hash does not match", async () => {
    const { etcdctl } = await import("../support/snapshot.ts");
    const p = join(dir, "altered.db");
    const r = etcdctl("snapshot", "restore", p, "--data-dir", join(dir, "restored"));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("expected sha256");
  });
});
