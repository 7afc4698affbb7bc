// Routing configuration as an operator meets it: one clear line for each mistake, the
// HariKube format and kine-style URLs, route explain/list, refusing rules that would
// strand existing keys, and rules appended to the watched file applying live.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { appendFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Etcd3 } from "etcd3";
import { sleep } from "../support/differential.ts";
import { startStrata } from "../support/strata.ts";
import { keysInSqlite } from "../support/stored-keys.ts";

const MAIN = join(resolve(import.meta.dir, "../.."), "src/main.ts");
const dir = mkdtempSync(join(tmpdir(), "strata-routing-config-"));
let n = 0;

function file(text: string, ext = "yaml"): string {
  const path = join(dir, `config-${++n}.${ext}`);
  writeFileSync(path, text);
  return path;
}

function strata(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", timeout: 30_000, env: { ...process.env, STRATA_CONFIG: "" } });
  return { code: r.status, out: r.stdout, err: r.stderr.trim() };
}

const db = (name: string) => `sqlite://${join(dir, name)}`;

describe("config errors: one line naming the file, the field and the fix", () => {
  test.each([
    ["malformed YAML", "backends:\n  main: [unclosed\n", /config-\d+\.yaml: not valid YAML/],
    ["a route to a backend that is not defined", `backends:\n  main: ${db("a.db")}\ndefault: main\nroutes:\n  - match: { resource: events }\n    backend: evnts\n`, /routes\[0\]\.backend: unknown backend "evnts"; defined backends: main/],
    ["a default that is not defined", `backends:\n  main: ${db("a.db")}\n  ev: ${db("b.db")}\ndefault: nope\n`, /default: unknown backend "nope"; defined backends: main, ev/],
    ["several backends and no default", `backends:\n  main: ${db("a.db")}\n  ev: ${db("b.db")}\n`, /default: say which backend holds keys no route matches/],
    ["a rule shadowed by an earlier one", `backends:\n  main: ${db("a.db")}\n  ev: ${db("b.db")}\ndefault: main\nroutes:\n  - match: { resource: events }\n    backend: ev\n  - match: { prefix: /registry/events/kube-system/ }\n    backend: main\n`, /routes\[1\]: can never match: routes\[0\] \(resource: events\) comes first and takes every key it would; move it above or remove it/],
    ["a rule that can never match", `backends:\n  main: ${db("a.db")}\n  ev: ${db("b.db")}\ndefault: main\nroutes:\n  - match: { group: apps, resource: deployments }\n    backend: ev\n`, /routes\[0\]: can never match: group "apps": built-in resources are stored without their API group/],
    ["an unknown match field", `backends:\n  main: ${db("a.db")}\nroutes:\n  - match: { kind: Pod }\n    backend: main\n`, /routes\[0\]\.match\.kind: match accepts prefix, key, group, resource and namespace/],
    ["an invalid regular expression", `backends:\n  main: ${db("a.db")}\nroutes:\n  - match: { key: "^/registry/(secrets" }\n    backend: main\n`, /routes\[0\]\.match\.key: match\.key is not a valid regular expression/],
    ["an unsupported URL", `backends:\n  main: redis://localhost:6379\n`, /backends\.main: unsupported URL redis:\/\/localhost:6379/],
  ])("%s", (_, text, want) => {
    const path = file(text);
    const r = strata("serve", "--config", path);
    expect(r.code).toBe(2);
    expect(r.err.split("\n")).toHaveLength(1);
    expect(r.err).toContain(path);
    expect(r.err).toMatch(want);
  });

  test("a backend that cannot be reached is named", () => {
    const path = file(`backends:\n  main: ${db("a.db")}\n  events: postgres://strata:pw@127.0.0.1:1/events\ndefault: main\nroutes:\n  - match: { resource: events }\n    backend: events\n`);
    const r = strata("serve", "--config", path);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^strata: cannot start: backend events \(postgres:\/\/strata:\*\*\*@127\.0\.0\.1:1\/events\): /);
    expect(r.err).not.toContain("pw");
  });
});

describe("route explain and route list", () => {
  test("strata's format", () => {
    const path = file(`backends:\n  main: ${db("m.db")}\n  tenants: mysql://strata:secret@tcp(127.0.0.1:3306)/tenants\n  events: nats://strata:secret@127.0.0.1:4222?bucket=events\ndefault: main\nroutes:\n  - match: { group: stable.example.com, resource: shirts }\n    backend: tenants\n  - match: { namespace: "team-*" }\n    backend: tenants\n  - match: { resource: events }\n    backend: events\n`);
    const e = strata("route", "explain", "/registry/pods/team-a/web-0", "--config", path);
    expect(e.code).toBe(0);
    expect(e.out).toContain("parsed: core/built-in (no group in key), resource pods, namespace team-a, name web-0");
    expect(e.out).toContain("rule: 2. namespace: team-*");
    expect(e.out).toContain("backend: tenants (mysql://strata:***@127.0.0.1:3306/tenants)");
    const d = strata("route", "explain", "/registry/pods/default/web-0", "--config", path);
    expect(d.out).toContain("rule: none matched; the default backend");
    expect(d.out).toContain("backend: main");
    const ev = strata("route", "explain", "/registry/events/default/web-0.17a", "--config", path);
    expect(ev.out).toContain("backend: events (nats://strata:***@127.0.0.1:4222?bucket=events)");
    const l = strata("route", "list", "--config", path);
    expect(l.out).toContain("1. group: stable.example.com, resource: shirts -> tenants");
    expect(l.out).toContain("  events: nats://strata:***@127.0.0.1:4222?bucket=events");
    expect(l.out).toContain("3. resource: events -> events");
    expect(l.out).toContain("otherwise -> main");
  });

  test("HariKube's topology format, named by TOPOLOGY_CONFIG", () => {
    const path = file([
      "backends:",
      "  - name: events",
      `    endpoint: ${db("ev.db")}`,
      "    prefix: { prefix: /registry/events/ }",
      "  - name: shirts",
      `    endpoint: ${db("sh.db")}`,
      "    customresource: { group: stable.example.com, kind: Shirt }",
      "  - name: prod",
      `    endpoint: ${db("prod.db")}`,
      "    regexp: { prefix: /registry/secrets/, key: \"^/registry/secrets/prod-\" }",
      "  - name: main",
      `    endpoint: ${db("main.db")}`,
      "",
    ].join("\n"));
    const run = (key: string) => {
      const r = spawnSync(process.execPath, [MAIN, "route", "explain", key], { encoding: "utf8", env: { ...process.env, TOPOLOGY_CONFIG: path } });
      return /backend: (\S+)/.exec(r.stdout)?.[1];
    };
    expect(run("/registry/events/default/e")).toBe("events");
    expect(run("/registry/stable.example.com/shirts/default/red")).toBe("shirts");
    expect(run("/registry/secrets/prod-db")).toBe("prod");
    expect(run("/registry/secrets/dev-db")).toBe("main");
  });
});

describe("rules and existing keys", () => {
  test("a rule set that would strand existing keys is refused, naming them and the command", async () => {
    const first = file(`backends:\n  main: ${db("s1.db")}\n  other: ${db("s2.db")}\ndefault: main\nroutes:\n  - match: { resource: events }\n    backend: other\n`);
    const s = await startStrata(["--config", first]);
    const c = new Etcd3({ hosts: s.endpoint });
    for (let i = 0; i < 3; i++) await c.put(`/registry/pods/team-a/p${i}`).value("x");
    c.close();
    await s.stop();
    const second = file(`backends:\n  main: ${db("s1.db")}\n  other: ${db("s2.db")}\ndefault: main\nroutes:\n  - match: { resource: events }\n    backend: other\n  - match: { namespace: team-a }\n    backend: other\n`);
    const r = strata("serve", "--config", second, "--listen", "http://127.0.0.1:1");
    expect(r.code).toBe(2);
    expect(r.err).toContain("3 under /registry/pods/team-a/ (in main, rules say other)");
    expect(r.err).toContain(`strata migrate --to-config ${second} --endpoint URL`);
  });

  test("rules appended to the watched file apply live; other changes are refused and the running rules stay", async () => {
    const base = `backends:\n  main: ${db("l1.db")}\n  side: ${db("l2.db")}\ndefault: main\nroutes:\n  - match: { resource: events }\n    backend: side\n`;
    const path = file(base);
    const s = await startStrata(["--config", path]);
    const c = new Etcd3({ hosts: s.endpoint });
    try {
      await c.put("/registry/configmaps/default/before").value("x");
      const appended = "  - match: { resource: configmaps, namespace: team-* }\n    backend: side\n";
      appendFileSync(path, appended);
      const deadline = Date.now() + 10_000;
      while (!s.stderr().includes("appended routes applied") && Date.now() < deadline) await sleep(100);
      expect(s.stderr()).toContain("appended routes applied");
      await c.put("/registry/configmaps/team-x/after").value("y");
      const keys = (name: string) => keysInSqlite(join(dir, name));
      expect(keys("l2.db")).toContain("/registry/configmaps/team-x/after");
      expect(keys("l1.db")).toContain("/registry/configmaps/default/before");

      writeFileSync(path, base.replace("resource: events", "resource: leases") + appended);
      const until = Date.now() + 10_000;
      while (!s.stderr().includes("config change refused") && Date.now() < until) await sleep(100);
      expect(s.stderr()).toContain("routes[0] changed (only routes appended at the end apply live)");
      await c.put("/registry/events/default/e1").value("z");
      expect(keys("l2.db")).toContain("/registry/events/default/e1");
    } finally {
      c.close();
      await s.stop();
    }
  });
});
