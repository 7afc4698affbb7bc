// strata in front of an upstream etcd ("core", the default backend) with PostgreSQL
// ("pg") for events and one custom resource, as kube-apiserver's --etcd-servers-overrides
// would split them: the Kubernetes-shaped scenarios per resource against a separate real
// etcd; rows looked up in PostgreSQL and in the upstream directly; leases kept by etcd
// holding keys in PostgreSQL; requests spanning both refused; the config checks; route
// list; migrate and import refusing; a strata whose upstream is this strata; an upstream
// that goes away; and a PostgreSQL default with the upstream for one resource.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { create as message, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Etcd3 } from "etcd3";
import postgres from "postgres";
import { attempt, b, type Ctx, differential, prefixEnd, sleep, useServers } from "../support/differential.ts";
import { makeCa, makeCert } from "../support/certs.ts";
import { create, modRevisionOf, pagedList, remove, update } from "../support/kubernetes-ops.ts";
import { startEtcd } from "../support/etcd.ts";
import { rawWatch } from "../support/raw-watch.ts";
import { listenerPid } from "../../scripts/bench/measure.ts";
import { PutRequestSchema, RangeRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { freshDatabase, startStrata } from "../support/strata.ts";

const MAIN = join(resolve(import.meta.dir, "../.."), "src/main.ts");
const dir = mkdtempSync(join(tmpdir(), "strata-upstream-etcd-"));
const urls: Record<string, string> = {};
let config = "";
let n = 0;

function file(lines: string[]): string {
  const path = join(dir, `config-${++n}.yaml`);
  writeFileSync(path, [...lines, ""].join("\n"));
  return path;
}

const sides = useServers({
  strataArgs: async () => {
    urls.core = await freshDatabase("etcd", dir);
    urls.pg = await freshDatabase("postgres", dir);
    config = file([
      "backends:",
      `  core: ${urls.core}`,
      `  pg: ${urls.pg}`,
      "default: core",
      "routes:",
      "  - match: { resource: events }",
      "    backend: pg",
      "  - match: { group: stable.example.com, resource: shirts }",
      "    backend: pg",
      // a hung upstream is answered Unavailable by then ("stops answering" below measures it)
      "request-timeout: 2s",
    ]);
    return ["--config", config];
  },
});

const strata = () => sides()[1]!;
/** a client of the upstream etcd itself */
const upstream = () => new Etcd3({ hosts: urls.core!.slice("etcd://".length) });

function cli(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", timeout: 60_000, env: { ...process.env, STRATA_CONFIG: "" } });
  return { code: r.status, out: r.stdout, err: r.stderr.trim() };
}

async function pgKeys(): Promise<string[]> {
  const sql = postgres(urls.pg!, { max: 1, onnotice: () => {} });
  try {
    return (await sql`SELECT k FROM kv`).map((r) => Buffer.from(r.k as Uint8Array).toString());
  } finally {
    await sql.end();
  }
}

async function pgLeases(): Promise<string[]> {
  const sql = postgres(urls.pg!, { max: 1, onnotice: () => {} });
  try {
    return (await sql`SELECT id FROM leases`).map((r) => String(r.id));
  } finally {
    await sql.end();
  }
}

async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const RESOURCES: Array<[string, string]> = [
  ["pods, in the upstream etcd", "/registry/pods/"],
  ["events, in PostgreSQL", "/registry/events/"],
  ["shirts (a custom resource), in PostgreSQL", "/registry/stable.example.com/shirts/"],
];

describe.each(RESOURCES)("Kubernetes-shaped scenarios: %s", (_, p) => {
  // revisions are read where the resource lives: the upstream and PostgreSQL number their own
  const opts = { baseKey: `${p}default/base-probe` };

  test("create, create again, guarded updates and deletes by mod_revision", () =>
    differential(sides(), async (c, ctx: Ctx) => {
      const key = `${p}default/obj-0`;
      return [
        await create(c, key, "v1"),
        await create(c, key, "v1-again"),
        await update(c, key, "v2", ctx.rev(0)),
        await update(c, key, "v2", ctx.rev(1)),
        await remove(c, key, ctx.rev(1)),
        await remove(c, key, ctx.rev(2)),
        await attempt(c.kv.range({ key: b(key) } as never)),
      ];
    }, opts));

  test("a paginated list at the first page's revision while writes land", () =>
    differential(sides(), async (c) => {
      for (let i = 0; i < 13; i++) await create(c, `${p}ns${i % 3}/item-${String(i).padStart(2, "0")}`, `d${i}`);
      return pagedList(c, p, 4, async (n) => {
        await create(c, `${p}zz/late-${n + 1}`, "late");
        await c.kv.deleteRange({ key: b(`${p}ns0/item-00`) } as never);
      });
    }, opts));

  test("a watch from a list's revision + 1 with prev_kv sees every later change once", () =>
    differential(sides(), async (c) => {
      const w = `${p}watched/`;
      for (let i = 0; i < 4; i++) await create(c, `${w}o${i}`, "v1");
      const list = await c.kv.range({ key: b(w), range_end: prefixEnd(w) } as never);
      // changes between the list and the watch are not lost
      await update(c, `${w}o0`, "v2", list.kvs[0]!.mod_revision);
      await remove(c, `${w}o1`, list.kvs[1]!.mod_revision);
      const seen: unknown[] = [];
      const watcher = await c.watch().prefix(w).startRevision(String(BigInt(list.header.revision) + 1n)).withPreviousKV().create();
      watcher.on("put", (kv, prev) => seen.push(["put", kv, prev ?? null]));
      watcher.on("delete", (kv, prev) => seen.push(["delete", kv, prev ?? null]));
      await create(c, `${w}o9`, "v1");
      await update(c, `${w}o2`, "v2", await modRevisionOf(c, `${w}o2`));
      const deadline = Date.now() + 5000;
      while (seen.length < 4 && Date.now() < deadline) await sleep(10);
      await sleep(100);
      await watcher.cancel();
      return [list, seen];
    }, opts));
});

describe("where the keys are", () => {
  test("events and shirts are rows in PostgreSQL, pods are keys in the upstream etcd, and nowhere else", async () => {
    const keys = await pgKeys();
    const up = upstream();
    try {
      const inEtcd = (await up.getAll().prefix("/registry/").keys()).map(String);
      const under = (ks: string[], p: string) => ks.filter((k) => k.startsWith(p));
      expect(under(keys, "/registry/events/").length).toBeGreaterThan(0);
      expect(under(keys, "/registry/stable.example.com/shirts/").length).toBeGreaterThan(0);
      expect(under(keys, "/registry/pods/")).toEqual([]);
      expect(under(inEtcd, "/registry/pods/").length).toBeGreaterThan(0);
      expect(under(inEtcd, "/registry/events/")).toEqual([]);
      expect(under(inEtcd, "/registry/stable.example.com/")).toEqual([]);
      // strata serves each resource from where it lives
      const count = async (p: string) => Number((await strata().client.kv.range({ key: b(p), range_end: prefixEnd(p), count_only: true } as never)).count);
      expect(await count("/registry/events/")).toBe(under(keys, "/registry/events/").length);
      expect(await count("/registry/pods/")).toBe(under(inEtcd, "/registry/pods/").length);
    } finally {
      up.close();
    }
  });
});

describe("leases kept by the upstream etcd", () => {
  test("a lease granted through strata is etcd's; events in PostgreSQL attached to it go when it expires", async () => {
    const c = strata().client;
    const up = upstream();
    try {
      const lease = (await c.leaseClient.leaseGrant({ TTL: 2 } as never)).ID;
      expect(Number((await up.leaseClient.leaseTimeToLive({ ID: lease } as never)).TTL)).toBeGreaterThan(0);
      for (let i = 0; i < 3; i++) await c.kv.put({ key: b(`/registry/events/default/expiring-${i}`), value: b("e"), lease } as never);
      await c.kv.put({ key: b("/registry/pods/default/expiring-pod"), value: b("p"), lease } as never);
      expect(await pgLeases()).toContain(lease);
      expect((await pgKeys()).filter((k) => k.includes("expiring-"))).toHaveLength(3);
      const ttl = await c.leaseClient.leaseTimeToLive({ ID: lease, keys: true } as never) as unknown as { keys: Buffer[] };
      expect(ttl.keys.map(String)).toEqual([
        "/registry/events/default/expiring-0",
        "/registry/events/default/expiring-1",
        "/registry/events/default/expiring-2",
        "/registry/pods/default/expiring-pod",
      ]);
      await until("the leased events to go", async () => (await pgKeys()).every((k) => !k.includes("expiring-")));
      expect(await pgLeases()).not.toContain(lease);
      expect((await c.kv.range({ key: b("/registry/pods/default/expiring-pod") } as never)).kvs).toHaveLength(0);
      expect((await c.kv.range({ key: b("/registry/events/default/expiring-0") } as never)).kvs).toHaveLength(0);
    } finally {
      up.close();
    }
  }, 20_000);

  test("revoking through strata removes the keys in the upstream and in PostgreSQL at once", async () => {
    const c = strata().client;
    const lease = (await c.leaseClient.leaseGrant({ TTL: 60 } as never)).ID;
    await c.kv.put({ key: b("/registry/events/default/revoked-e"), value: b("e"), lease } as never);
    await c.kv.put({ key: b("/registry/stable.example.com/shirts/default/revoked-s"), value: b("s"), lease } as never);
    await c.kv.put({ key: b("/registry/pods/default/revoked-pod"), value: b("p"), lease } as never);
    const up = upstream();
    try {
      const before = Number((await up.get("anything").exec()).header.revision);
      const r = await c.leaseClient.leaseRevoke({ ID: lease } as never);
      // the answer is the upstream's, in its revisions
      expect(Number(r.header.revision)).toBe(before + 1);
      expect((await pgKeys()).filter((k) => k.includes("revoked-"))).toEqual([]);
      expect(await pgLeases()).not.toContain(lease);
      expect((await up.get("/registry/pods/default/revoked-pod").exec()).kvs).toHaveLength(0);
      expect(Number((await c.leaseClient.leaseTimeToLive({ ID: lease } as never)).TTL)).toBe(-1);
    } finally {
      up.close();
    }
  });

  test("a lease revoked directly in the upstream takes its keys in PostgreSQL with it", async () => {
    const c = strata().client;
    const lease = (await c.leaseClient.leaseGrant({ TTL: 60 } as never)).ID;
    await c.kv.put({ key: b("/registry/events/default/behind-e"), value: b("e"), lease } as never);
    const up = upstream();
    try {
      await up.leaseClient.leaseRevoke({ ID: lease } as never);
      await until("the event to go", async () => (await pgKeys()).every((k) => !k.includes("behind-")));
      expect(await pgLeases()).not.toContain(lease);
    } finally {
      up.close();
    }
  });
});

describe("requests spanning the upstream and PostgreSQL", () => {
  const REASON = "core is an upstream etcd with its own revisions, so a request must stay within one resource routed to it";

  test("a range, a txn and a watch over both are refused, naming both; nothing is written", async () => {
    const c = strata().client;
    const range = await attempt(c.kv.range({ key: b("/registry/"), range_end: prefixEnd("/registry/"), count_only: true } as never));
    expect(String((range as { error: string }).error)).toContain(`strata: range spans backends core and pg; ${REASON}`);
    const txn = await attempt(c.kv.txn({
      compare: [],
      success: [
        { request_put: { key: b("/registry/pods/default/span"), value: b("1") } },
        { request_put: { key: b("/registry/events/default/span"), value: b("1") } },
      ],
      failure: [],
    } as never));
    expect(String((txn as { error: string }).error)).toContain(`strata: txn spans backends core and pg; ${REASON}`);
    expect((await c.kv.range({ key: b("/registry/pods/default/span") } as never)).kvs).toHaveLength(0);
    expect((await c.kv.range({ key: b("/registry/events/default/span") } as never)).kvs).toHaveLength(0);
    const w = rawWatch(strata().endpoint);
    try {
      w.send({ requestUnion: { case: "createRequest", value: { key: b("/registry/"), rangeEnd: prefixEnd("/registry/") } } });
      await until("the watch answer", async () => w.responses.length > 0);
      expect(w.responses[0]).toMatchObject({ created: true, canceled: true, watchId: -1n, cancelReason: `strata: watch spans backends core and pg; ${REASON}` });
    } finally {
      w.close();
    }
  });

  test("one watch stream with a watcher in each gets progress per watcher, in each backend's revisions", async () => {
    const c = strata().client;
    const w = rawWatch(strata().endpoint);
    try {
      for (const p of ["/registry/pods/", "/registry/events/"]) {
        w.send({ requestUnion: { case: "createRequest", value: { key: b(p), rangeEnd: prefixEnd(p) } } });
      }
      await until("both watchers", async () => w.responses.filter((r) => r.created).length === 2);
      const pod = BigInt((await c.kv.put({ key: b("/registry/pods/default/progress"), value: b("p") } as never)).header.revision);
      const ev = BigInt((await c.kv.put({ key: b("/registry/events/default/progress"), value: b("e") } as never)).header.revision);
      await until("both events", async () => w.responses.filter((r) => r.events.length > 0).length === 2);
      w.send({ requestUnion: { case: "progressRequest", value: {} } });
      const progress = () => w.responses.filter((r) => !r.created && !r.canceled && r.events.length === 0);
      await until("two progress answers", async () => progress().length === 2);
      await sleep(200);
      const byId = new Map(progress().map((r) => [r.watchId, r.header!.revision]));
      expect([...byId.keys()].sort()).toEqual([0n, 1n]);
      expect(byId.get(0n)).toBe(pod);
      expect(byId.get(1n)).toBe(ev);
    } finally {
      w.close();
    }
  });
});

describe("an upstream etcd that stops answering", () => {
  test("requests to it are answered Unavailable within about 2 s, naming it, and served again once it answers", async () => {
    const pid = Number(listenerPid(Number(urls.core!.split(":").at(-1))));
    expect(pid).toBeGreaterThan(0);
    // plain gRPC: the etcd3 client retries Unavailable by itself, which would be measured too
    const c = new grpc.Client(strata().endpoint, grpc.credentials.createInsecure());
    const call = (path: string, body: Uint8Array) =>
      new Promise<{ ms: number; outcome: string }>((resolve) => {
        const t = Date.now();
        c.makeUnaryRequest(path, (x: Buffer) => x, (x: Buffer) => x, Buffer.from(body), { deadline: Date.now() + 60_000 }, (err) =>
          resolve({ ms: Date.now() - t, outcome: err ? `${err.code} ${err.details}` : "ok" })
        );
      });
    const put = (key: string) => call("/etcdserverpb.KV/Put", toBinary(PutRequestSchema, message(PutRequestSchema, { key: b(key), value: b("v") })));
    const get = (key: string) => call("/etcdserverpb.KV/Range", toBinary(RangeRequestSchema, message(RangeRequestSchema, { key: b(key) })));
    process.kill(pid, "SIGSTOP");
    try {
      // a hung etcd (not a refused connection) held these for 20 s, until HTTP/2's ping gave up
      for (const { ms, outcome } of [await put("/registry/pods/default/hung"), await get("/registry/pods/default/hung")]) {
        expect(ms).toBeLessThan(2500);
        expect(outcome).toStartWith(`14 strata: backend core (${urls.core}) unavailable: request timed out`);
      }
    } finally {
      process.kill(pid, "SIGCONT");
    }
    expect((await put("/registry/pods/default/back")).outcome).toBe("ok");
    c.close();
  });
});

describe("status page", () => {
  test("lists the upstream etcd beside PostgreSQL, both healthy (it failed on an upstream before)", async () => {
    expect(strata().metrics).toBeTruthy();
    const r = await fetch(`${strata().metrics}/status.json`);
    expect(r.status).toBe(200);
    const report = (await r.json()) as { default: string; backends: Array<{ name: string; url: string; healthy: boolean; isDefault: boolean }> };
    const byName = Object.fromEntries(report.backends.map((b) => [b.name, b]));
    expect(Object.keys(byName).sort()).toEqual(["core", "pg"]);
    expect(byName.core).toMatchObject({ url: urls.core, healthy: true, isDefault: true });
    expect(byName.pg).toMatchObject({ healthy: true, isDefault: false });
  });
});

describe("configuration", () => {
  const head = () => ["backends:", `  core: ${urls.core}`, `  pg: ${urls.pg}`, "default: core", "routes:"];

  test("a route that takes part of a resource is refused in one line naming the file, the rule, the field and the fix", () => {
    const path = file([...head(), "  - match: { resource: events }", "    backend: pg", '  - match: { resource: pods, namespace: "team-*" }', "    backend: pg"]);
    const r = cli("serve", "--config", path);
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      `strata: configuration error: ${path}: routes[1]: match.namespace "team-*": with an upstream etcd among the backends (core) every route must take whole resources, ` +
        "because etcd numbers its own revisions and a list of one resource must stay in one backend; " +
        "match on resource (and group) only, or a prefix such as /registry/pods/ or /registry/example.com/widgets/",
    );
    const prefix = cli("serve", "--config", file([...head(), "  - match: { prefix: /registry/pods/kube-system/ }", "    backend: pg"]));
    expect(prefix.code).toBe(2);
    expect(prefix.err).toContain(': routes[0]: match.prefix "/registry/pods/kube-system/": with an upstream etcd among the backends (core)');
    const whole = cli("route", "list", "--config", file([...head(), "  - match: { prefix: /registry/stable.example.com/shirts/ }", "    backend: pg"]));
    expect(whole.code).toBe(0);
  });

  test("an upstream that cannot be reached is named", () => {
    const r = cli("serve", "--config", file(["backends:", "  core: etcd://127.0.0.1:1", `  pg: ${urls.pg}`, "default: core"]));
    expect(r.code).toBe(1);
    expect(r.err).toBe("strata: cannot start: backend core (etcd://127.0.0.1:1): unavailable: connect ECONNREFUSED 127.0.0.1:1");
  });

  test("route list shows the upstream etcd", () => {
    const r = cli("route", "list", "--config", config);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`  core (default): ${urls.core} (upstream etcd, its own revisions)\n`);
    expect(r.out).toContain("  1. resource: events -> pg\n");
    expect(r.out).toContain("  otherwise -> core\n");
  });

  test("strata refuses to start when keys in the upstream would belong elsewhere, and says why it cannot move them", async () => {
    await strata().client.kv.put({ key: b("/registry/configmaps/default/cm"), value: b("x") } as never);
    const path = file([...head(), "  - match: { resource: events }", "    backend: pg", "  - match: { resource: configmaps }", "    backend: pg"]);
    const r = cli("serve", "--config", path);
    // with its words, so a start that failed otherwise says how (one run beside a CPU hog exited 1)
    expect({ code: r.code, err: r.err }).toMatchObject({ code: 2 });
    expect(r.err).toContain("1 under /registry/configmaps/ (in core, rules say pg)");
    expect(r.err).toContain("strata does not copy keys into or out of an upstream etcd (etcd numbers its own revisions)");
  });

  test("migrate and import refuse a configuration with an upstream etcd", async () => {
    const offline = cli("migrate", "--from-config", config, "--to-config", config);
    expect(offline.code).toBe(2);
    expect(offline.err).toContain("backend core is an upstream etcd; strata does not copy keys into or out of an upstream etcd");
    const imported = cli("import", "--from", `http://${sides()[0]!.endpoint}`, "--config", config);
    expect(imported.code).toBe(2);
    expect(imported.err).toContain("strata import: backend core is an upstream etcd");
    const next = file([...head(), "  - match: { resource: events }", "    backend: pg", "  - match: { group: stable.example.com, resource: shirts }", "    backend: pg", "  - match: { resource: secrets }", "    backend: pg"]);
    const live = cli("migrate", "--to-config", next, "--endpoint", `http://${strata().endpoint}`);
    expect(live.code).toBe(1);
    expect(live.err).toBe("strata migrate: cannot migrate live: backend core is an upstream etcd; strata does not copy keys into or out of an upstream etcd (etcd numbers its own revisions)");
  });
});

test("a strata whose upstream etcd is this strata: put, get, watch and leases pass through both", async () => {
  const top = await startStrata([], `etcd://${strata().endpoint}`);
  const c = new Etcd3({ hosts: top.endpoint });
  try {
    const seen: string[] = [];
    const watcher = await c.watch().prefix("/registry/events/layered/").create();
    watcher.on("put", (kv) => seen.push(String(kv.key)));
    const put = await c.kv.put({ key: b("/registry/pods/layered/p"), value: b("through two") } as never);
    const below = await strata().client.kv.range({ key: b("/registry/pods/layered/p") } as never);
    expect(String(below.kvs[0]!.value)).toBe("through two");
    expect(below.kvs[0]!.mod_revision).toBe(put.header.revision);
    // an event written below, into PostgreSQL, reaches a watcher on the top strata
    await strata().client.kv.put({ key: b("/registry/events/layered/e"), value: b("e") } as never);
    await until("the event on the top strata", async () => seen.length === 1);
    expect(seen).toEqual(["/registry/events/layered/e"]);
    await watcher.cancel();
    const lease = (await c.leaseClient.leaseGrant({ TTL: 30 } as never)).ID;
    expect(Number((await strata().client.leaseClient.leaseTimeToLive({ ID: lease } as never)).TTL)).toBeGreaterThan(0);
    await c.leaseClient.leaseRevoke({ ID: lease } as never);
  } finally {
    c.close();
    await top.stop();
  }
}, 30_000);

test("an upstream that stops answering: calls fail with Unavailable naming it, its watchers are canceled saying why", async () => {
  const etcd = await startEtcd();
  const s = await startStrata([], `etcd://${etcd.endpoint}`);
  const c = new Etcd3({ hosts: s.endpoint, retry: false } as never);
  const w = rawWatch(s.endpoint);
  try {
    await c.put("k").value("1").exec();
    w.send({ requestUnion: { case: "createRequest", value: { key: b("k") } } });
    await until("the watcher", async () => w.responses.some((r) => r.created));
    await etcd.stop();
    const r = await attempt(c.get("k").exec());
    expect(String((r as { error: string }).error)).toContain(`strata: backend etcd://${etcd.endpoint} unavailable: `);
    await until("the watcher to be canceled", async () => w.responses.some((x) => x.canceled));
    const canceled = w.responses.find((x) => x.canceled)!;
    expect(canceled.watchId).toBe(0n);
    expect(canceled.cancelReason).toContain(`strata: backend etcd://${etcd.endpoint} unavailable`);
  } finally {
    w.close();
    c.close();
    await s.stop();
  }
}, 30_000);

test("an upstream over TLS with a client certificate: files in the etcds:// URL, or from the --etcd-* settings", async () => {
  const certs = mkdtempSync(join(tmpdir(), "strata-upstream-tls-"));
  const ca = makeCa(certs, "ca");
  const server = makeCert(certs, "etcd", ca, "server");
  const client = makeCert(certs, "strata", ca, "client");
  const etcd = await startEtcd([], { ca: ca.cert, ...server, client });
  const inUrl = await startStrata([], `etcds://${etcd.endpoint}?ca=${ca.cert}&cert=${client.cert}&key=${client.key}`);
  const bySettings = await startStrata(["--etcd-cafile", ca.cert, "--etcd-certfile", client.cert, "--etcd-keyfile", client.key], `etcds://${etcd.endpoint}`);
  const a = new Etcd3({ hosts: inUrl.endpoint });
  const b2 = new Etcd3({ hosts: bySettings.endpoint });
  try {
    await a.put("over-tls").value("1").exec();
    expect(await b2.get("over-tls").string()).toBe("1");
    // etcd asks for a client certificate: without one strata cannot start, and says where
    const refused = cli("serve", "--backend", `etcds://${etcd.endpoint}?ca=${ca.cert}`, "--listen", "http://127.0.0.1:1");
    expect(refused.code).toBe(1);
    expect(refused.err).toStartWith(`strata: cannot start: backend etcds://${etcd.endpoint}: unavailable: `);
    const missing = cli("serve", "--backend", `etcds://${etcd.endpoint}?ca=${join(certs, "nope.crt")}`);
    expect(missing.code).toBe(1);
    expect(missing.err).toStartWith(`strata: cannot start: backend etcds://${etcd.endpoint}: cannot read the ca file ${join(certs, "nope.crt")}: `);
  } finally {
    a.close();
    b2.close();
    await Promise.all([inUrl.stop(), bySettings.stop()]);
    await etcd.stop();
  }
}, 60_000);

test("an upstream of two members, the first unreachable: strata starts on the second and serves", async () => {
  const etcd = await startEtcd();
  const s = await startStrata([], `etcd://127.0.0.1:1,${etcd.endpoint}`);
  const c = new Etcd3({ hosts: s.endpoint });
  try {
    await c.put("two-members").value("1").exec();
    expect(await c.get("two-members").string()).toBe("1");
  } finally {
    c.close();
    await s.stop();
    await etcd.stop();
  }
}, 30_000);

test("PostgreSQL as the default and an upstream etcd for one resource: leases are mirrored into the upstream", async () => {
  const etcd = await startEtcd();
  const pg = await freshDatabase("postgres", dir);
  const path = file(["backends:", `  main: ${pg}`, `  cm: etcd://${etcd.endpoint}`, "default: main", "routes:", "  - match: { resource: configmaps }", "    backend: cm"]);
  const s = await startStrata(["--config", path]);
  const c = new Etcd3({ hosts: s.endpoint });
  const up = new Etcd3({ hosts: etcd.endpoint });
  try {
    const lease = (await c.leaseClient.leaseGrant({ TTL: 60 } as never)).ID;
    const mirrored = await up.leaseClient.leaseTimeToLive({ ID: lease } as never);
    expect(mirrored.grantedTTL).toBe("60");
    await c.kv.put({ key: b("/registry/configmaps/default/leased"), value: b("c"), lease } as never);
    await c.kv.put({ key: b("/registry/secrets/default/leased"), value: b("s"), lease } as never);
    expect((await up.get("/registry/configmaps/default/leased").exec()).kvs[0]!.lease).toBe(lease);
    await c.leaseClient.leaseRevoke({ ID: lease } as never);
    expect((await up.get("/registry/configmaps/default/leased").exec()).kvs).toHaveLength(0);
    expect(Number((await up.leaseClient.leaseTimeToLive({ ID: lease } as never)).TTL)).toBe(-1);
    expect((await c.kv.range({ key: b("/registry/secrets/default/leased") } as never)).kvs).toHaveLength(0);
    // Compact names PostgreSQL's revisions here: the upstream keeps its own history
    const at = (await c.kv.put({ key: b("/registry/secrets/default/after"), value: b("s") } as never)).header.revision;
    expect(await attempt(c.kv.compact({ revision: at } as never))).not.toHaveProperty("error");
    // among several backends, an upstream that is gone is named by its name and URL
    await etcd.stop();
    const once = new Etcd3({ hosts: s.endpoint, retry: false } as never);
    const gone = await attempt(once.get("/registry/configmaps/default/x").exec());
    once.close();
    expect(String((gone as { error: string }).error)).toContain(`strata: backend cm (etcd://${etcd.endpoint}) unavailable: `);
  } finally {
    c.close();
    up.close();
    await s.stop();
    await etcd.stop();
  }
}, 30_000);
