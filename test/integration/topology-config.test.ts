// HariKube's TopologyConfig objects written as kube-apiserver writes them (JSON at
// /registry/harikube.info/topologyconfigs/NS/NAME, by a plain etcd client here): strata
// puts their routes in force and answers in the object's status; what would strand keys
// is refused with the reason, or moved with spec.migrate; a malformed one names its field.
// Where keys live is read with SQL from the SQLite files themselves.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Etcd3 } from "etcd3";
import { startStrata, type StrataProcess } from "../support/strata.ts";
import { keysInSqlite } from "../support/stored-keys.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-topology-config-"));
const db = (name: string) => `sqlite://${join(dir, name)}`;
const PREFIX = "/registry/harikube.info/topologyconfigs/";
let strata: StrataProcess;
let client: Etcd3;
let created = 0;

/** the live keys of one SQLite file, read with SQL */
function keysIn(name: string): string[] {
  return keysInSqlite(join(dir, name));
}

/** a TopologyConfig as kube-apiserver stores it (its JSON encoder ends with a newline) */
function topologyConfig(name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return {
    apiVersion: "harikube.info/v1",
    kind: "TopologyConfig",
    metadata: {
      name,
      namespace: "default",
      uid: `00000000-0000-0000-0000-${String(++created).padStart(12, "0")}`,
      generation: 1,
      creationTimestamp: `2026-01-01T00:00:${String(created).padStart(2, "0")}Z`,
    },
    spec,
  };
}

/** creates the object, or changes its spec keeping its status, as kube-apiserver does with a status subresource */
async function apply(name: string, spec: Record<string, unknown>): Promise<void> {
  const key = `${PREFIX}default/${name}`;
  const old = await client.get(key).string();
  const object = old ? { ...JSON.parse(old), spec } : topologyConfig(name, spec);
  await client.put(key).value(JSON.stringify(object) + "\n");
}

type Status = { deployStatus?: string; deployStatusReason?: string; migration?: unknown; appliedSpec?: unknown };

async function stored(name: string): Promise<{ object: Record<string, unknown> & { status?: Status }; raw: Buffer; version: number; modRevision: string }> {
  const r = await client.get(`${PREFIX}default/${name}`).exec();
  const kv = r.kvs[0]!;
  return { object: JSON.parse(kv.value.toString()), raw: kv.value, version: Number(kv.version), modRevision: kv.mod_revision };
}

/**
 * The object's status once `done` holds, seen through a watch on its key (each status
 * write is a new revision); the bound only stops a test that would otherwise hang.
 */
async function statusWhen(name: string, done: (s: Status) => boolean, seen: Status[] = []): Promise<Status> {
  const key = `${PREFIX}default/${name}`;
  const watcher = await client.watch().key(key).create();
  try {
    const now = (await stored(name)).object.status ?? {};
    if (done(now)) return now;
    return await new Promise<Status>((resolve, reject) => {
      const guard = setTimeout(() => reject(new Error(`${name}: status never reached the expected state; stderr:\n${strata.stderr()}`)), 90_000);
      watcher.on("put", (kv) => {
        const s = (JSON.parse(kv.value.toString()) as { status?: Status }).status ?? {};
        seen.push(s);
        if (done(s)) {
          clearTimeout(guard);
          resolve(s);
        }
      });
    });
  } finally {
    await watcher.cancel();
  }
}

const settled = (s: Status) => s.deployStatus === "Active" || s.deployStatus === "Failed";

beforeAll(async () => {
  const config = join(dir, "strata.yaml");
  writeFileSync(config, `backends:\n  main: ${db("main.db")}\n  side: ${db("side.db")}\ndefault: main\n`);
  strata = await startStrata(["--config", config]);
  client = new Etcd3({ hosts: strata.endpoint });
});

afterAll(async () => {
  client?.close();
  await strata?.stop();
});

describe("TopologyConfig objects", () => {
  test("applied: status Active, and new objects land in the database it names; the status write does not loop", async () => {
    await apply("shirts", {
      targetSecret: "default/topology-config",
      // HariKube's example spelling: driver options on the SQLite URL, the group with its version, the plural
      backends: [{ name: "shirts", endpoint: `${db("side.db")}?_journal=WAL&cache=shared`, customresource: { group: "stable.example.com/v1", kind: "shirts" } }],
    });
    const s = await statusWhen("shirts", settled);
    expect(s).toMatchObject({ deployStatus: "Active", deployStatusReason: "" });
    // the spec in force, for a restarted strata to put back
    expect(s.appliedSpec).toEqual((await stored("shirts")).object.spec);
    const written = await stored("shirts");
    // a normal write: spec kept, a new version, kube-apiserver's trailing newline kept
    expect(written.version).toBe(2);
    expect((written.object.spec as { targetSecret: string }).targetSecret).toBe("default/topology-config");
    expect(written.raw.at(-1)).toBe(0x0a);

    await client.put("/registry/stable.example.com/shirts/default/red").value('{"kind":"Shirt"}');
    await client.put("/registry/configmaps/default/plain").value("x");
    expect(keysIn("side.db")).toContain("/registry/stable.example.com/shirts/default/red");
    expect(keysIn("main.db")).not.toContain("/registry/stable.example.com/shirts/default/red");
    expect(keysIn("main.db")).toContain("/registry/configmaps/default/plain");

    // another object evaluated and answered after it: by then a loop would have written the first again
    await apply("hats", { backends: [{ name: "side", endpoint: db("side.db"), prefix: { prefix: "/registry/hats/" } }] });
    expect((await statusWhen("hats", settled)).deployStatus).toBe("Active");
    expect((await stored("shirts")).version).toBe(2);
    expect((await stored("hats")).version).toBe(2);
  });

  test("one that would strand existing keys: Failed with the reason, nothing moved", async () => {
    for (let i = 0; i < 3; i++) await client.put(`/registry/configmaps/team-a/c${i}`).value(`v${i}`);
    await apply("team-a", { backends: [{ name: "side", endpoint: db("side.db"), namespace: { namespace: "team-a" } }] });
    const s = await statusWhen("team-a", settled);
    expect(s.deployStatus).toBe("Failed");
    expect(s.deployStatusReason).toContain("TopologyConfig default/team-a: these rules would make existing keys unreachable: 3 under /registry/configmaps/team-a/ (in main, rules say side)");
    expect(s.deployStatusReason).toContain("spec.migrate: true");
    for (let i = 0; i < 3; i++) expect(keysIn("main.db")).toContain(`/registry/configmaps/team-a/c${i}`);
    expect(keysIn("side.db").filter((k) => k.includes("team-a"))).toEqual([]);
    // the running rules stay: a new key of team-a still goes to main
    await client.put("/registry/configmaps/team-a/c3").value("v3");
    expect(keysIn("main.db")).toContain("/registry/configmaps/team-a/c3");
  });

  test("with spec.migrate: true the keys move while strata serves, nothing lost", async () => {
    const before = await client.getAll().prefix("/registry/configmaps/").strings();
    await apply("team-a", { migrate: true, backends: [{ name: "side", endpoint: db("side.db"), namespace: { namespace: "team-a" } }] });
    const seen: Status[] = [];
    const s = await statusWhen("team-a", (x) => settled(x) && !x.deployStatusReason?.includes("would make existing keys unreachable"), seen);
    // progress went into status while the keys moved
    expect(seen.find((x) => x.deployStatus === "Migrating")).toMatchObject({ migration: { phase: "counting" } });
    expect(s.deployStatus).toBe("Active");
    expect(s.deployStatusReason).toMatch(/^moved 4 keys/);
    expect(s.migration).toBeUndefined();
    const team = keysIn("side.db").filter((k) => k.startsWith("/registry/configmaps/team-a/")).sort();
    expect(team).toEqual([0, 1, 2, 3].map((i) => `/registry/configmaps/team-a/c${i}`));
    expect(keysIn("main.db").filter((k) => k.startsWith("/registry/configmaps/team-a/"))).toEqual([]);
    expect(await client.getAll().prefix("/registry/configmaps/").strings()).toEqual(before);
  });

  test("a malformed one: Failed naming the field; one naming a database strata has not opened: Failed naming it", async () => {
    await apply("bad", { backends: [{ name: "x", customresource: { group: "example.com", kind: "widgets" } }] });
    const s = await statusWhen("bad", settled);
    expect(s.deployStatus).toBe("Failed");
    expect(s.deployStatusReason).toBe("TopologyConfig default/bad: spec.backends[0].endpoint: missing; a HariKube backend is { name, endpoint } with at most one of prefix, namespace, customresource, regexp");

    await apply("elsewhere", { backends: [{ name: "other", endpoint: db("other.db"), prefix: { prefix: "/registry/widgets/" } }] });
    const e = await statusWhen("elsewhere", settled);
    expect(e.deployStatus).toBe("Failed");
    expect(e.deployStatusReason).toContain("TopologyConfig default/elsewhere: spec.backends[0].endpoint: sqlite://");
    expect(e.deployStatusReason).toContain("is not one of the databases strata has open");
  });

  test("status.deployOrder goes before creation order; a rule an earlier one shadows is refused, naming it", async () => {
    await apply("coats", { backends: [{ name: "main", endpoint: db("main.db"), prefix: { prefix: "/registry/coats/" } }] });
    expect((await statusWhen("coats", settled)).deployStatus).toBe("Active");
    // created later, ordered first by HariKube's operator: its narrower rule comes before
    const wool = { ...topologyConfig("wool", { backends: [{ name: "side", endpoint: db("side.db"), prefix: { prefix: "/registry/coats/wool/" } }] }), status: { deployOrder: 1 } };
    await client.put(`${PREFIX}default/wool`).value(JSON.stringify(wool) + "\n");
    expect((await statusWhen("wool", settled)).deployStatus).toBe("Active");
    await client.put("/registry/coats/wool/w1").value("x");
    expect(keysIn("side.db")).toContain("/registry/coats/wool/w1");
    // without an order it comes after coats, which takes every key it would
    await apply("silk", { backends: [{ name: "side", endpoint: db("side.db"), prefix: { prefix: "/registry/coats/silk/" } }] });
    const silk = await statusWhen("silk", settled);
    expect(silk).toMatchObject({
      deployStatus: "Failed",
      deployStatusReason: "TopologyConfig default/silk: spec.backends[0]: can never match: TopologyConfig default/coats: spec.backends[0] (prefix: /registry/coats/) comes first and takes every key it would; move it above or remove it",
    });
  });

  test("an edited spec that would strand keys is refused and the previous spec stays in force", async () => {
    await apply("team-a", { backends: [{ name: "side", endpoint: db("side.db"), namespace: { namespace: "team-b" } }] });
    const s = await statusWhen("team-a", (x) => x.deployStatus === "Failed");
    expect(s.deployStatusReason).toContain("4 under /registry/configmaps/team-a/ (in side, rules say main)");
    expect(s.deployStatusReason).toMatch(/its previous spec stays in force$/);
    await client.put("/registry/configmaps/team-a/c4").value("v4");
    expect(keysIn("side.db")).toContain("/registry/configmaps/team-a/c4");
    expect(keysIn("main.db")).not.toContain("/registry/configmaps/team-a/c4");
  });

  test("after a restart the specs in force come back from status.appliedSpec, before strata checks where keys are", async () => {
    const versions = { shirts: (await stored("shirts")).version };
    expect(await strata.terminate()).toBe(0);
    await strata.restart();
    // started: the keys the TopologyConfigs placed are not taken for stranded
    await client.put("/registry/configmaps/team-a/c5").value("v5");
    await client.put("/registry/stable.example.com/shirts/default/blue").value('{"kind":"Shirt"}');
    expect(keysIn("side.db")).toEqual(expect.arrayContaining(["/registry/configmaps/team-a/c5", "/registry/stable.example.com/shirts/default/blue"]));
    // evaluated again after the restart (another object answered since): an Active one is not rewritten
    await apply("gloves", { backends: [{ name: "side", endpoint: db("side.db"), prefix: { prefix: "/registry/gloves/" } }] });
    expect((await statusWhen("gloves", settled)).deployStatus).toBe("Active");
    expect((await stored("shirts")).version).toBe(versions.shirts);
    // team-a's edit is still refused (its count now takes in the keys written since), its previous spec in force
    const teamA = (await stored("team-a")).object.status as Status & { appliedSpec?: { migrate?: boolean } };
    expect(teamA.deployStatus).toBe("Failed");
    expect(teamA.deployStatusReason).toContain("6 under /registry/configmaps/team-a/ (in side, rules say main)");
    expect(teamA.appliedSpec?.migrate).toBe(true);
  });

  test("JSON in the protobuf envelope is read, and its status written back in the envelope", async () => {
    const json = Buffer.from(JSON.stringify(topologyConfig("wrapped", { backends: [{ name: "side", endpoint: db("side.db"), prefix: { prefix: "/registry/boots/" } }] })));
    const w = new BinaryWriter();
    w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("harikube.info/v1").tag(2, WireType.LengthDelimited).string("TopologyConfig").join();
    w.tag(2, WireType.LengthDelimited).bytes(json).tag(4, WireType.LengthDelimited).string("application/json");
    const key = `${PREFIX}default/wrapped`;
    // watched from before the write: the status write is the put after it
    const watcher = await client.watch().key(key).create();
    const status = new Promise<Buffer>((resolve) => watcher.on("put", (kv) => kv.value.includes("deployStatus") && resolve(kv.value)));
    await client.put(key).value(Buffer.concat([Buffer.from("k8s\0"), w.finish()]));
    const value = await status;
    await watcher.cancel();
    expect(value.subarray(0, 4).toString("latin1")).toBe("k8s\0");
    expect(value.toString("latin1")).toContain('"deployStatus":"Active"');
    await client.put("/registry/boots/default/b1").value("x");
    expect(keysIn("side.db")).toContain("/registry/boots/default/b1");
  });
});
