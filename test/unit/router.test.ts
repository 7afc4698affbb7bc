// Key anatomy over real kube-apiserver key shapes, and rule matching and coverage.
import { describe, expect, test } from "bun:test";
import { parseKey, parsePrefix } from "../../src/router/kubernetes-key.ts";
import { rangePrefix } from "../../src/router/range-prefix.ts";
import { RoutingTable } from "../../src/router/rules.ts";

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
    expect({ ...a }).toEqual({ group: undefined, sub: undefined, namespace: undefined, ...want } as never);
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
  ], "main", "/registry/");

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
    ], "main", "/registry/");
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
