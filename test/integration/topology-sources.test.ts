// The config sources HariKube's TOPOLOGY_CONFIG names: file://PATH (rescanned), an
// http(s):// URL (polled with its ETag; while the web server is away the running rules
// stay), and secret://NS/NAME (a Secret in strata's default backend, in protobuf as
// kube-apiserver stores it, or JSON; its files merged in name order; a change seen through
// a watch). Where keys land is read with SQL from the SQLite files.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { appendFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Etcd3 } from "etcd3";
import { freePort, startStrata, type StrataProcess } from "../support/strata.ts";
import { keysInSqlite } from "../support/stored-keys.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-topology-sources-"));
const db = (name: string) => `sqlite://${join(dir, name)}`;

function keysIn(name: string): string[] {
  return keysInSqlite(join(dir, name));
}

/** Resolves once strata's log has `text` `times` times; the bound only stops a test that would hang. */
async function logged(s: StrataProcess, text: string, times = 1): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (s.stderr().split(text).length - 1 < times) {
    if (Date.now() > deadline) throw new Error(`strata never logged "${text}" ${times} times:\n${s.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** HariKube's topology: main without a matcher (the default), side taking events, then `more` entries */
function harikube(main: string, side: string, more = ""): string {
  return `backends:\n  - name: main\n    endpoint: ${db(main)}\n  - name: side\n    endpoint: ${db(side)}\n    prefix: { prefix: /registry/events/ }\n${more}`;
}
const namespaceRule = (ns: string) => `  - name: side\n    endpoint: SIDE\n    namespace: { namespace: ${ns} }\n`;

describe("config sources", () => {
  test("a URL that does not answer at start: strata does not start, saying why; other commands take files only", async () => {
    const url = `http://127.0.0.1:${await freePort()}/topology.yaml`;
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [join(import.meta.dir, "../../src/main.ts"), ...args], { encoding: "utf8", timeout: 30_000, env: { ...process.env, STRATA_CONFIG: "", TOPOLOGY_CONFIG: url } });
    const serve = run("serve", "--listen", `http://127.0.0.1:${await freePort()}`, "--metrics-listen", "");
    expect(serve.status).toBe(2);
    expect(serve.stderr.trim()).toStartWith(`strata: configuration error: ${url}: cannot fetch the topology: `);
    const route = run("route", "list");
    expect(route.status).toBe(2);
    expect(route.stderr.trim()).toBe(`strata: configuration error: ${url}: only strata serve reads a topology from a URL or a Secret; give this command the topology as a file (--config FILE)`);
  });

  test("file://PATH is rescanned", async () => {
    const path = join(dir, "topology.yaml");
    writeFileSync(path, harikube("f-main.db", "f-side.db"));
    const s = await startStrata(["--config", `file://${path}`]);
    const c = new Etcd3({ hosts: s.endpoint });
    try {
      appendFileSync(path, namespaceRule("team-f").replace("SIDE", db("f-side.db")));
      await logged(s, "appended routes applied");
      await c.put("/registry/configmaps/team-f/a").value("x");
      expect(keysIn("f-side.db")).toContain("/registry/configmaps/team-f/a");
    } finally {
      c.close();
      await s.stop();
    }
  });

  test("an http URL is polled with its ETag; while the web server is away the running rules stay", async () => {
    const port = await freePort();
    let doc = harikube("h-main.db", "h-side.db");
    let notModified = 0;
    const serve = () =>
      Bun.serve({
        port,
        hostname: "127.0.0.1",
        fetch(req) {
          const etag = `"${Bun.hash(doc).toString(16)}"`;
          if (req.headers.get("if-none-match") === etag) {
            notModified++;
            return new Response(null, { status: 304, headers: { etag } });
          }
          return new Response(doc, { headers: { etag, "content-type": "application/yaml" } });
        },
      });
    let server = serve();
    const s = await startStrata(["--config", `http://127.0.0.1:${port}/topology.yaml`, "--topology-poll-interval", "200ms"]);
    const c = new Etcd3({ hosts: s.endpoint });
    try {
      await c.put("/registry/events/default/e1").value("x");
      expect(keysIn("h-side.db")).toContain("/registry/events/default/e1");
      // unchanged: strata asks with the ETag and is answered 304
      const deadline = Date.now() + 60_000;
      while (notModified < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(notModified).toBeGreaterThanOrEqual(2);

      doc += namespaceRule("team-h").replace("SIDE", db("h-side.db"));
      await logged(s, "appended routes applied");
      await c.put("/registry/configmaps/team-h/a").value("x");
      expect(keysIn("h-side.db")).toContain("/registry/configmaps/team-h/a");

      server.stop(true);
      await logged(s, "fetching the topology failed; the running rules stay");
      await c.put("/registry/configmaps/team-h/b").value("x");
      await c.put("/registry/events/default/e2").value("x");
      expect(keysIn("h-side.db")).toEqual(expect.arrayContaining(["/registry/configmaps/team-h/b", "/registry/events/default/e2"]));

      doc += namespaceRule("team-i").replace("SIDE", db("h-side.db"));
      server = serve();
      await logged(s, "the topology URL answers again");
      await logged(s, "appended routes applied", 2);
      await c.put("/registry/configmaps/team-i/a").value("x");
      expect(keysIn("h-side.db")).toContain("/registry/configmaps/team-i/a");
      expect(keysIn("h-main.db").filter((k) => k.startsWith("/registry/configmaps/"))).toEqual([]);
    } finally {
      c.close();
      await s.stop();
      server.stop(true);
    }
  });

  test("a Secret in the default backend, in protobuf then JSON, its files in name order; a change is followed", async () => {
    const main = db("s-main.db");
    // the Secret is written first, as kube-apiserver would into strata's default backend
    const first = await startStrata([], main);
    const w = new Etcd3({ hosts: first.endpoint });
    const key = "/registry/secrets/kube-system/topology";
    await w.put(key).value(protobufSecret({
      "02-side.yaml": `backends:\n  - name: side\n    endpoint: ${db("s-side.db")}\n    prefix: { prefix: /registry/events/ }\n`,
      "01-main.yaml": `backends:\n  - name: main\n    endpoint: ${main}\n`,
    }));
    w.close();
    await first.stop();

    const s = await startStrata(["--config", "secret://kube-system/topology", "--backend", main]);
    const c = new Etcd3({ hosts: s.endpoint });
    try {
      await c.put("/registry/events/default/e1").value("x");
      expect(keysIn("s-side.db")).toContain("/registry/events/default/e1");

      // kubectl apply of a changed Secret: a normal write strata's watch sees
      await c.put(key).value(protobufSecret({
        "01-main.yaml": `backends:\n  - name: main\n    endpoint: ${main}\n`,
        "02-side.yaml": `backends:\n  - name: side\n    endpoint: ${db("s-side.db")}\n    prefix: { prefix: /registry/events/ }\n`,
        "03-team.yaml": `backends:\n${namespaceRule("team-s").replace("SIDE", db("s-side.db"))}`,
      }));
      await logged(s, "appended routes applied");
      await c.put("/registry/configmaps/team-s/a").value("x");
      expect(keysIn("s-side.db")).toContain("/registry/configmaps/team-s/a");

      // the same Secret stored as JSON (--storage-media-type=application/json)
      const files = {
        "01-main.yaml": `backends:\n  - name: main\n    endpoint: ${main}\n`,
        "02-side.yaml": `backends:\n  - name: side\n    endpoint: ${db("s-side.db")}\n    prefix: { prefix: /registry/events/ }\n`,
        "03-team.yaml": `backends:\n${namespaceRule("team-s").replace("SIDE", db("s-side.db"))}`,
        "04-team.yaml": `backends:\n${namespaceRule("team-t").replace("SIDE", db("s-side.db"))}`,
      };
      const data = Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString("base64")]));
      await c.put(key).value(JSON.stringify({ kind: "Secret", apiVersion: "v1", metadata: { name: "topology", namespace: "kube-system" }, data, type: "Opaque" }));
      await logged(s, "appended routes applied", 2);
      await c.put("/registry/configmaps/team-t/a").value("x");
      expect(keysIn("s-side.db")).toContain("/registry/configmaps/team-t/a");

      // a change that is not an append is refused, and the running rules stay
      await c.put(key).value(protobufSecret({ "01-main.yaml": `backends:\n  - name: main\n    endpoint: ${main}\n` }));
      await logged(s, "config change refused");
      expect(s.stderr()).toContain("the backends changed; the running rules stay");
      await c.put("/registry/events/default/e2").value("x");
      expect(keysIn("s-side.db")).toContain("/registry/events/default/e2");
    } finally {
      c.close();
      await s.stop();
    }
  });
});

/** a Secret as kube-apiserver stores it by default: "k8s\0", runtime.Unknown, core/v1 Secret (metadata=1, data=2, type=3) */
function protobufSecret(files: Record<string, string>): Buffer {
  const secret = new BinaryWriter();
  secret.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("topology").tag(3, WireType.LengthDelimited).string("kube-system").join();
  for (const [name, text] of Object.entries(files)) {
    secret.tag(2, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(name).tag(2, WireType.LengthDelimited).bytes(Buffer.from(text)).join();
  }
  secret.tag(3, WireType.LengthDelimited).string("Opaque");
  const unknown = new BinaryWriter();
  unknown.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("v1").tag(2, WireType.LengthDelimited).string("Secret").join();
  unknown.tag(2, WireType.LengthDelimited).bytes(secret.finish());
  return Buffer.concat([Buffer.from("k8s\0"), unknown.finish()]);
}
