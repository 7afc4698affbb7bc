// Key anatomy over real kube-apiserver key shapes, and rule matching and coverage.
import { describe, expect, test } from "bun:test";
import { parseKey, parsePrefix } from "../../src/router/kubernetes-key.ts";
import { rangePrefix } from "../../src/router/range-prefix.ts";
import { RoutingTable } from "../../src/router/rules.ts";
import { validateTopology } from "../../src/router/validate.ts";
import { readTopology } from "../../src/config/topology.ts";
import { type Topology } from "../../src/router/contract.ts";

describe("Kubernetes key anatomy", () => {
  test.each([
    ["/registry/pods/default/web-0", { resource: "pods", namespace: "default", name: "web-0" }],
    ["/registry/events/kube-system/coredns-1.17a3f", { resource: "events", namespace: "kube-system", name: "coredns-1.17a3f" }],
    ["/registry/leases/kube-node-lease/node-1", { resource: "leases", namespace: "kube-node-lease", name: "node-1" }],
    ["/registry/namespaces/team-a", { resource: "namespaces", name: "team-a" }],
    ["/registry/minions/node-1", { resource: "minions", name: "node-1" }],
    ["/registry/services/specs/default/kubernetes", { resource: "services", sub: "specs", namespace: "default", name: "kubernetes" }],
    ["/registry/services/endpoints/default/kubernetes", { resource: "services", sub: "endpoints", namespace: "default", name: "kubernetes" }],
    ["/registry/deployments/default/web", { resource: "deployments", namespace: "default", name: "web" }],
    ["/registry/apiregistration.k8s.io/apiservices/v1.apps", { group: "apiregistration.k8s.io", resource: "apiservices", name: "v1.apps" }],
    ["/registry/apiextensions.k8s.io/customresourcedefinitions/shirts.stable.example.com", { group: "apiextensions.k8s.io", resource: "customresourcedefinitions", name: "shirts.stable.example.com" }],
    ["/registry/stable.example.com/shirts/default/red", { group: "stable.example.com", resource: "shirts", namespace: "default", name: "red" }],
    ["/registry/stable.example.com/clustershirts/big", { group: "stable.example.com", resource: "clustershirts", name: "big" }],
  ])("%s", (key, want) => {
    const a = parseKey(key)!;
    expect({ ...a }).toEqual({ prefix: "/registry/", group: undefined, sub: undefined, namespace: undefined, ...want } as never);
  });

  test("keys outside the prefix, or without a name, have no anatomy", () => {
    expect(parseKey("compact_rev_key")).toBeUndefined();
    expect(parseKey("/registry/pods/")).toBeUndefined();
    expect(parseKey("/other/pods/default/x")).toBeUndefined();
    expect(parseKey("/k3s/pods/default/x", "/k3s/")).toMatchObject({ resource: "pods", namespace: "default" });
  });

  test("what a prefix fixes", () => {
    expect(parsePrefix("/registry/pods/team-a/")).toMatchObject({ group: null, resource: { exact: "pods" }, namespace: { exact: "team-a" } });
    expect(parsePrefix("/registry/pods/")).toMatchObject({ resource: { exact: "pods" }, namespace: { partial: "" } });
    expect(parsePrefix("/registry/po")).toEqual({ underPrefix: true });
    expect(parsePrefix("/registry/stable.example.com/sh")).toMatchObject({ group: { exact: "stable.example.com" }, resource: { partial: "sh" } });
  });
});

describe("routing rules", () => {
  const table = new RoutingTable([
    { match: { resource: "events" }, backend: "events", source: "r0" },
    { match: { group: "stable.example.com", resource: "shirts" }, backend: "tenants", source: "r1" },
    { match: { namespace: "team-*" }, backend: "tenants", source: "r2" },
    { match: { key: "^/registry/secrets/prod-" }, backend: "main", source: "r3" },
    { match: { prefix: "/registry/leases/" }, backend: "leases", source: "r4" },
  ], "main", ["/registry/"]);

  test("first match wins; unmatched keys go to the default", () => {
    expect(table.route("/registry/events/team-a/e1")).toBe("events");
    expect(table.route("/registry/stable.example.com/shirts/default/red")).toBe("tenants");
    expect(table.route("/registry/pods/team-x/p")).toBe("tenants");
    expect(table.route("/registry/pods/default/p")).toBe("main");
    expect(table.route("/registry/namespaces/team-x")).toBe("main"); // the namespace object itself is cluster-scoped
    expect(table.route("/registry/leases/kube-node-lease/n1")).toBe("leases");
    expect(table.route("compact_rev_key")).toBe("main");
    expect(table.explain("/registry/pods/team-x/p").index).toBe(2);
  });

  test("the backends a range can touch", () => {
    expect(table.backendsFor("/registry/events/")).toEqual(["events"]);
    expect(table.backendsFor("/registry/pods/default/")).toEqual(["main"]);
    expect(table.backendsFor("/registry/pods/team-a/")).toEqual(["tenants"]);
    expect(table.backendsFor("/registry/pods/").sort()).toEqual(["main", "tenants"]);
    // leases in team-* namespaces go to tenants first
    expect(table.backendsFor("/registry/leases/")).toEqual(["tenants", "leases"]);
    expect(table.backendsFor("/registry/secrets/")).toEqual(["tenants", "main"]);
    expect(table.backendsFor("").sort()).toEqual(["events", "leases", "main", "tenants"]);
  });

  test("an anchored key regex covers every prefix it matches", () => {
    const t = new RoutingTable([
      { match: { key: "^/registry/pods/[^/]*[147]/" }, backend: "pg", source: "r0" },
      { match: { key: "^/registry/configmaps/[^/]*[147]/$" }, backend: "pg", source: "r1" },
      { match: { key: "^/registry/secrets/(?=a)" }, backend: "pg", source: "r2" },
      { match: { key: "^/registry/leases/a|b" }, backend: "pg", source: "r3" },
    ], "main", ["/registry/"]);
    // every key under a namespace ending in 1 matches: the range lives in pg alone
    expect(t.backendsFor("/registry/pods/team-1/")).toEqual(["pg"]);
    // not provable: the namespace is not whole, or the regex ends with $, looks ahead or alternates at the top
    expect(t.backendsFor("/registry/pods/team-1")).toEqual(["pg", "main"]);
    expect(t.backendsFor("/registry/configmaps/team-1/")).toEqual(["pg", "main"]);
    expect(t.backendsFor("/registry/secrets/a")).toEqual(["pg", "main"]);
    expect(t.backendsFor("/registry/leases/a")).toEqual(["pg", "main"]);
    // and a key the regex does not match is not claimed
    expect(t.backendsFor("/registry/pods/team-2/")).toEqual(["pg", "main"]);
  });

  test("a range's common prefix", () => {
    const r = (s: string, e: string | undefined) => rangePrefix({ start: Buffer.from(s, "latin1"), end: e === undefined ? undefined : Buffer.from(e, "latin1") });
    expect(r("/registry/pods/", "/registry/pods0")).toBe("/registry/pods/");
    // the next page of a prefix list stays within the prefix
    expect(r("/registry/pods/ns/a\0", "/registry/pods0")).toBe("/registry/pods/");
    expect(r("/registry/pods/ns/a\0", "/registry/pods1")).toBe("/registry/pods");
    expect(r("/registry/pods/ns/a\0", "/registry/pods0x")).toBe("/registry/pods");
    expect(r("a\xff\xffb", "b")).toBe("a\xff\xff");
    expect(r("/registry/pods/a", "/registry/pods/c")).toBe("/registry/pods/");
    expect(r("/a", undefined)).toBe("");
  });
});

describe("the key anatomy under several prefixes (one kube-apiserver per tenant)", () => {
  const prefixes = ["/registry/", "/tenant-a/registry/", "/tenant-b/registry/"];

  test("a key is read under the prefix it starts with", () => {
    expect(parseKey("/tenant-a/registry/pods/default/web-0", prefixes)).toEqual({
      prefix: "/tenant-a/registry/", group: undefined, resource: "pods", sub: undefined, namespace: "default", name: "web-0",
    });
    expect(parseKey("/tenant-b/registry/stable.example.com/shirts/team/red", prefixes)).toMatchObject({ prefix: "/tenant-b/registry/", group: "stable.example.com", resource: "shirts", namespace: "team" });
    expect(parseKey("/registry/pods/default/web-0", prefixes)).toMatchObject({ prefix: "/registry/", resource: "pods" });
    // the same key under a prefix that is not configured has no anatomy
    expect(parseKey("/tenant-c/registry/pods/default/web-0", prefixes)).toBeUndefined();
    expect(parseKey("/tenant-a/registry/pods/default/web-0")).toBeUndefined();
    expect(parsePrefix("/tenant-a/registry/pods/team-a/", prefixes)).toMatchObject({ group: null, resource: { exact: "pods" }, namespace: { exact: "team-a" } });
    expect(parsePrefix("/tenant-a/", prefixes)).toEqual({ underPrefix: false });
  });

  // a resource rule confined to one tenant, each tenant's catch-all, and a rule on events anywhere
  const table = new RoutingTable([
    { match: { prefix: "/tenant-a/registry/", resource: "pods" }, backend: "a-pods", source: "r0" },
    { match: { prefix: "/tenant-a/registry/" }, backend: "a", source: "r1" },
    { match: { resource: "events" }, backend: "events", source: "r2" },
    { match: { prefix: "/tenant-b/registry/", namespace: "team-*" }, backend: "b-teams", source: "r3" },
    { match: { prefix: "/tenant-b/registry/" }, backend: "b", source: "r4" },
  ], "main", prefixes);

  test("rules with a tenant's prefix and a resource or namespace take that tenant's keys only", () => {
    expect(table.route("/tenant-a/registry/pods/default/p")).toBe("a-pods");
    expect(table.route("/tenant-a/registry/configmaps/default/c")).toBe("a");
    expect(table.route("/tenant-a/registry/events/default/e")).toBe("a");
    expect(table.route("/tenant-b/registry/pods/default/p")).toBe("b");
    expect(table.route("/tenant-b/registry/events/default/e")).toBe("events");
    expect(table.route("/tenant-b/registry/configmaps/team-x/c")).toBe("b-teams");
    expect(table.route("/tenant-b/registry/namespaces/team-x")).toBe("b");
    expect(table.route("/registry/pods/default/p")).toBe("main");
    expect(table.route("/registry/events/default/e")).toBe("events");
    expect(table.route("/registry/configmaps/team-x/c")).toBe("main");
    // the tenant's compaction key, outside its anatomy, stays with the tenant
    expect(table.route("/tenant-a/registry/compact_rev_key")).toBe("a");
  });

  test("the backends a tenant's range can touch", () => {
    expect(table.backendsFor("/tenant-a/registry/")).toEqual(["a-pods", "a"]);
    expect(table.backendsFor("/tenant-a/registry/pods/")).toEqual(["a-pods"]);
    expect(table.backendsFor("/tenant-a/registry/configmaps/")).toEqual(["a"]);
    // every tenant-b event goes to events (tenant-a's rule came first for tenant-a's)
    expect(table.backendsFor("/tenant-b/registry/events/")).toEqual(["events"]);
    expect(table.backendsFor("/tenant-b/registry/")).toEqual(["events", "b-teams", "b"]);
    expect(table.backendsFor("/tenant-b/registry/pods/team-1/")).toEqual(["b-teams"]);
    expect(table.backendsFor("/tenant-b/registry/pods/default/")).toEqual(["b"]);
    expect(table.backendsFor("/registry/pods/")).toEqual(["main"]);
    expect(table.backendsFor("/tenant-")).toEqual(["a-pods", "a", "events", "b-teams", "b", "main"]);
  });
});

describe("tenants in the config file", () => {
  const read = (doc: Record<string, unknown>): Topology => {
    const t = readTopology(doc, "strata.yaml")!;
    validateTopology(t);
    return t;
  };
  const backends = { main: "sqlite://main.db", a: "sqlite://a.db", b: "postgres://db/b", ev: "sqlite://ev.db" };

  test("each tenant's prefix is a key prefix, and its routes and catch-all come before the others", () => {
    const t = read({
      backends,
      default: "main",
      tenants: [
        { prefix: "/tenant-a/registry", backend: "a", routes: [{ match: { resource: "events" }, backend: "ev" }] },
        { prefix: "/tenant-b/registry/", backend: "b" },
      ],
      routes: [{ match: { resource: "events" }, backend: "ev" }],
    });
    expect(t.keyPrefixes).toEqual(["/registry/", "/tenant-a/registry/", "/tenant-b/registry/"]);
    expect(t.rules.map((r) => [r.match, r.backend, r.source])).toEqual([
      [{ resource: "events", prefix: "/tenant-a/registry/" }, "ev", "strata.yaml: tenants[0].routes[0]"],
      [{ prefix: "/tenant-a/registry/" }, "a", "strata.yaml: tenants[0]"],
      [{ prefix: "/tenant-b/registry/" }, "b", "strata.yaml: tenants[1]"],
      [{ resource: "events" }, "ev", "strata.yaml: routes[0]"],
    ]);
    const table = RoutingTable.of(t);
    expect(table.route("/tenant-a/registry/events/ns/e")).toBe("ev");
    expect(table.route("/tenant-a/registry/pods/ns/p")).toBe("a");
    expect(table.route("/tenant-b/registry/events/ns/e")).toBe("b");
    expect(table.route("/registry/events/ns/e")).toBe("ev");
  });

  test("key-prefix may list several prefixes; plain routes then read the anatomy under each", () => {
    const routes = [{ match: { prefix: "/tenant-a/registry/", resource: "pods" }, backend: "a" }];
    const t = read({ backends, default: "main", "key-prefix": ["/registry", "/tenant-a/registry/"], routes });
    expect(t.keyPrefixes).toEqual(["/registry/", "/tenant-a/registry/"]);
    expect(RoutingTable.of(t).route("/tenant-a/registry/pods/ns/p")).toBe("a");
    // without the tenant's prefix among the key prefixes, the rule has no anatomy to read
    expect(() => read({ backends, default: "main", routes })).toThrow("strata.yaml: routes[0]: can never match: prefix /tenant-a/registry/ holds no key with resource: pods");
  });

  test("the rules written before tenants existed route as they did", () => {
    const routes = [
      { match: { prefix: "/registry/pods/", namespace: "team-*" }, backend: "a" },
      { match: { resource: "events" }, backend: "ev" },
    ];
    const t = read({ backends, default: "main", routes });
    expect(t.keyPrefixes).toEqual(["/registry/"]);
    const table = RoutingTable.of(t);
    expect(table.route("/registry/pods/team-1/p")).toBe("a");
    expect(table.route("/registry/pods/default/p")).toBe("main");
    expect(table.route("/registry/events/default/e")).toBe("ev");
  });

  test.each([
    [{ tenants: [{ prefix: "/tenant-a/registry/", backend: "nope" }] }, 'strata.yaml: tenants[0].backend: unknown backend "nope"; defined backends: main, a, b, ev'],
    [{ tenants: [{ prefix: "/tenant-a/registry/", backend: "a", routes: [{ match: { prefix: "/tenant-b/registry/" }, backend: "b" }] }] },
      'strata.yaml: tenants[0].routes[0].match.prefix: "/tenant-b/registry/" is outside the tenant\'s prefix /tenant-a/registry/'],
    [{ tenants: [{ prefix: "/registry/tenant-a/", backend: "a" }] }, "strata.yaml: key prefixes /registry/ and /registry/tenant-a/ contain one another"],
    [{ tenants: [{ backend: "a" }] }, "strata.yaml: tenants[0].prefix"],
    [{ tenants: [{ prefix: "/t/", backend: "a", color: "red" }] }, "a tenant is { prefix: /NAME/registry/, backend: NAME, routes: [...] (optional) }"],
    [{ "key-prefix": [] }, "key-prefix must name at least one prefix"],
  ])("a mistake is named: %j", (extra, message) => {
    expect(() => read({ backends, default: "main", ...extra })).toThrow(message);
  });

  test("beside an upstream etcd, a tenant takes whole resources", () => {
    const up = { core: "etcd://127.0.0.1:2379", a: "sqlite://a.db" };
    expect(() => read({ backends: up, default: "core", tenants: [{ prefix: "/tenant-a/registry/", backend: "a" }] })).not.toThrow();
    expect(() => read({ backends: up, default: "core", tenants: [{ prefix: "/tenant-a/registry/", backend: "a", routes: [{ match: { resource: "events" }, backend: "core" }] }] })).not.toThrow();
    expect(() => read({ backends: up, default: "core", tenants: [{ prefix: "/tenant-a/registry/", backend: "a", routes: [{ match: { namespace: "x" }, backend: "core" }] }] }))
      .toThrow('strata.yaml: tenants[0].routes[0]: match.namespace "x": with an upstream etcd');
  });
});
