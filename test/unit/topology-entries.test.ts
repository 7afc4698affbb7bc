// HariKube's topology entries as strata reads them: the per-backend settings it honours,
// the fields it does not named in one line, namespace kinds, HariKube's spelling of
// custom resources, a TopologyConfig's spec; and the stored forms of the objects strata
// reads from the keyspace (JSON, JSON in the protobuf envelope, a Secret in protobuf).
import { describe, expect, test } from "bun:test";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { ConfigError } from "../../src/util/config-error.ts";
import { readTopology, readTopologyConfig } from "../../src/config/topology.ts";
import { readStoredJson, secretData } from "../../src/keyspace/stored-object.ts";
import { topologyDocuments } from "../../src/config/topology-documents.ts";

describe("HariKube entries", () => {
  const doc = {
    backends: [
      { name: "main", endpoint: "sqlite://./m.db" },
      {
        name: "pg",
        endpoint: "postgres://u:p@127.0.0.1:5432/db",
        customresource: { group: "product.example.com/v1", kind: "tenants" },
        connectionPool: { maxOpen: 4, maxIdle: 2, maxLifeTime: "5m" },
        compactInterval: "5m",
        backendTLS: { skipVerify: true },
        colour: "blue",
      },
      { name: "team", endpoint: "sqlite://./t.db", namespace: { namespace: "team-a", kinds: ["Pod", "configmaps"] } },
      { name: "shirts", endpoint: "sqlite://./s.db", customresource: { group: "stable.example.com", kind: "Shirt" } },
    ],
  };

  test("what strata honours is read, and everything else is named in one line, never dropped", () => {
    const t = readTopology(doc, "topology.yaml")!;
    expect(t.settings?.get("pg")).toEqual({ poolSize: 4 });
    // TLS and pool lifetimes become the parameters PostgreSQL's driver reads
    expect(t.backends.get("pg")).toBe("postgres://u:p@127.0.0.1:5432/db?sslmode=require&max_lifetime=300");
    expect(t.ignored).toBe(
      "backends[1] (pg): colour (unknown), connectionPool.maxIdle (strata's PostgreSQL pool keeps no idle minimum), " +
        "compactInterval (strata compacts the whole keyspace at one revision (--auto-compaction-*))",
    );
    expect(t.ignored!.split("\n")).toHaveLength(1);
  });

  test.each([
    ["mysql://u:p@db:3306/k", { caFile: "/ca.pem", certFile: "/c.pem", keyFile: "/k.pem" }, { maxIdle: 2, maxIdleLifeTime: "1m" }, "mysql://u:p@db:3306/k?ssl-ca=%2Fca.pem&ssl-cert=%2Fc.pem&ssl-key=%2Fk.pem&ssl=true&max-idle=2&idle-timeout=60", ""],
    ["postgres://u:p@db:5432/k?sslmode=verify-ca", { caFile: "/ca.pem" }, { maxIdleLifeTime: 30 }, "postgres://u:p@db:5432/k?sslmode=verify-ca&sslrootcert=%2Fca.pem&idle_timeout=30", ""],
    ["etcd://10.0.0.1:2379", { caFile: "/ca.pem", skipVerify: true }, undefined, "etcds://10.0.0.1:2379?ca=%2Fca.pem", "backendTLS.skipVerify (strata verifies etcd servers' certificates)"],
    ["sqlite://./x.db", { skipVerify: true }, { maxOpen: 3 }, "sqlite://./x.db", "backendTLS (SQLite is a file: no TLS), connectionPool.maxOpen (only PostgreSQL and MySQL have a pool)"],
  ])("%s: TLS and pool settings as URL parameters", (endpoint, backendTLS, connectionPool, url, ignored) => {
    const t = readTopology({ backends: [{ name: "x", endpoint, backendTLS, ...(connectionPool && { connectionPool }) }] }, "t.yaml")!;
    expect(t.backends.get("x")).toBe(url);
    expect(t.ignored ?? "").toBe(ignored ? `backends[0] (x): ${ignored}` : "");
  });

  test("HariKube's group with its version and plural kinds; namespace kinds are one rule each", () => {
    const t = readTopology(doc, "topology.yaml")!;
    expect(t.rules.map((r) => [r.match, r.backend])).toEqual([
      [{ group: "product.example.com", resource: "tenants" }, "pg"],
      [{ namespace: "team-a", resource: "pods" }, "team"],
      [{ namespace: "team-a", resource: "configmaps" }, "team"],
      [{ group: "stable.example.com", resource: "shirts" }, "shirts"],
    ]);
  });

  test("a bad setting names its field", () => {
    const bad = { backends: [{ name: "main", endpoint: "sqlite://./m.db", connectionPool: { maxOpen: "ten" } }] };
    expect(() => readTopology(bad, "t.yaml")).toThrow("t.yaml: backends[0].connectionPool.maxOpen: connectionPool.maxOpen must be a number");
  });
});

describe("a TopologyConfig's spec", () => {
  test("rules, migrate and settings", () => {
    const s = readTopologyConfig({ spec: { migrate: true, backends: [{ name: "side", endpoint: "sqlite://./s.db", prefix: { prefix: "/registry/events/" } }] } }, "TopologyConfig ns/a");
    expect(s.migrate).toBe(true);
    expect(s.rules).toEqual([{ match: { prefix: "/registry/events/" }, backend: "side", source: "TopologyConfig ns/a: spec.backends[0]" }]);
  });

  test.each([
    [{}, "TopologyConfig ns/a: spec: missing; a TopologyConfig is { spec: { backends: [...] } }"],
    [{ spec: { backends: [] } }, "TopologyConfig ns/a: spec.backends: backends must list at least one backend"],
    [{ spec: { backends: [{ name: "x", endpoint: "sqlite://./x.db" }] } }, 'TopologyConfig ns/a: spec.backends[0]: "x" has no matcher'],
    [{ spec: { migrate: "yes", backends: [{ name: "x", endpoint: "sqlite://./x.db", prefix: { prefix: "/p/" } }] } }, "TopologyConfig ns/a: spec.migrate: migrate must be true or false"],
    [{ spec: { backends: [{ name: "x", endpoint: "sqlite://./x.db", regexp: { key: "(" } }] } }, "TopologyConfig ns/a: spec.backends[0].regexp.key: regexp.key is not a valid regular expression"],
  ])("malformed: %j", (object, message) => {
    expect(() => readTopologyConfig(object, "TopologyConfig ns/a")).toThrow(ConfigError);
    expect(() => readTopologyConfig(object, "TopologyConfig ns/a")).toThrow(message);
  });
});

describe("stored objects", () => {
  const envelope = (apiVersion: string, kind: string, raw: Uint8Array, contentType = "") => {
    const w = new BinaryWriter();
    w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(apiVersion).tag(2, WireType.LengthDelimited).string(kind).join();
    w.tag(2, WireType.LengthDelimited).bytes(raw);
    if (contentType) w.tag(4, WireType.LengthDelimited).string(contentType);
    return new Uint8Array(Buffer.concat([Buffer.from("k8s\0"), w.finish()]));
  };

  test("JSON, plain or enveloped, is written back in its own form", () => {
    const plain = readStoredJson(new TextEncoder().encode('{"kind":"TopologyConfig","spec":{}}\n'))!;
    expect(Buffer.from(plain.encode({ ...plain.object, status: { deployStatus: "Active" } })).toString()).toBe('{"kind":"TopologyConfig","spec":{},"status":{"deployStatus":"Active"}}\n');
    const wrapped = readStoredJson(envelope("harikube.info/v1", "TopologyConfig", new TextEncoder().encode('{"kind":"TopologyConfig"}'), "application/json"))!;
    expect(wrapped.object).toEqual({ kind: "TopologyConfig" });
    const again = readStoredJson(wrapped.encode({ kind: "TopologyConfig", status: {} }))!;
    expect(again.object).toEqual({ kind: "TopologyConfig", status: {} });
    expect(readStoredJson(new TextEncoder().encode("k8s:enc:aescbc:v1:key:...."))).toBeUndefined();
  });

  test("a Secret's data from protobuf and from JSON", () => {
    const secret = new BinaryWriter();
    secret.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("topology").join();
    for (const [k, v] of [["b.yaml", "B"], ["a.yaml", "A"]]) {
      secret.tag(2, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(k!).tag(2, WireType.LengthDelimited).bytes(Buffer.from(v!)).join();
    }
    const fromProtobuf = secretData(envelope("v1", "Secret", secret.finish()))!;
    expect([...fromProtobuf].map(([k, v]) => [k, Buffer.from(v).toString()])).toEqual([["b.yaml", "B"], ["a.yaml", "A"]]);
    const fromJson = secretData(new TextEncoder().encode(JSON.stringify({ kind: "Secret", data: { "a.yaml": Buffer.from("A").toString("base64") } })))!;
    expect(Buffer.from(fromJson.get("a.yaml")!).toString()).toBe("A");
    expect(secretData(envelope("v1", "ConfigMap", secret.finish()))).toBeUndefined();
  });

  test("a Secret's files are merged in name order", () => {
    const files = new Map([
      ["2.yaml", new TextEncoder().encode("backends:\n  - name: side\n    endpoint: sqlite://./s.db\n    prefix: { prefix: /registry/events/ }\n")],
      ["1.yaml", new TextEncoder().encode("backends:\n  - name: main\n    endpoint: sqlite://./m.db\n")],
    ]);
    const t = topologyDocuments.secret(files, "secret://ns/topology");
    expect(t.default).toBe("main");
    expect([...t.backends.keys()]).toEqual(["main", "side"]);
  });
});
