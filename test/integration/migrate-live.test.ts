// A live migration between two rule sets (SQLite + PostgreSQL) while clients keep
// writing the way kube-apiserver does (create, guarded update, guarded delete), listing
// and watching: no acknowledged write is lost, every one reaches the watcher exactly once
// and in order, lists never show a key twice, per-prefix counts end equal to what the
// clients were told, each database holds exactly the keys the new rules give it, and a
// lease revoked afterwards takes its moved keys with it.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import postgres from "postgres";
import { b, prefixEnd, sleep } from "../support/differential.ts";
import { strataCli as cli, writeConfig } from "../support/cli.ts";
import { freshDatabase, startStrata, type StrataProcess } from "../support/strata.ts";
import { keysInSqlite } from "../support/stored-keys.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-live-migrate-"));

const config = (name: string, lines: string[]) => writeConfig(dir, name, lines);

type Model = Map<string, { value: string; mod: bigint }>;

const KINDS = ["/registry/pods/team-a/", "/registry/pods/default/", "/registry/configmaps/team-b/", "/registry/events/kube-system/", "/registry/events/default/"];

/** A client that owns its keys: creates, updates guarded by mod_revision, deletes; records every acknowledged result. */
async function writer(c: Etcd3, id: number, model: Model, acked: Array<{ key: string; rev: bigint }>, latencies: number[], stop: () => boolean) {
  let n = 0;
  while (!stop()) {
    const key = `${KINDS[n % KINDS.length]}w${id}-${n % 40}`;
    const had = model.get(key);
    const value = `w${id}-${n}`;
    const started = performance.now();
    const r = await c.kv.txn({
      compare: [{ key: b(key), target: "Mod", result: "Equal", mod_revision: String(had?.mod ?? 0n) }],
      success: [had && n % 7 === 3 ? { request_delete_range: { key: b(key) } } : { request_put: { key: b(key), value: b(value) } }],
      failure: [{ request_range: { key: b(key) } }],
    } as never);
    latencies.push(performance.now() - started);
    if (!r.succeeded) throw new Error(`writer ${id}: guarded write of ${key} failed: someone else changed it`);
    const rev = BigInt(r.header.revision);
    if (had && n % 7 === 3) model.delete(key);
    else model.set(key, { value, mod: rev });
    acked.push({ key, rev });
    n++;
  }
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

describe("live migration", () => {
  let s: StrataProcess | undefined;
  afterAll(async () => {
    await s?.stop();
  });

  test("moving keys between SQLite and PostgreSQL under live writes loses nothing", async () => {
    const main = await freshDatabase("sqlite", dir);
    const side = await freshDatabase("postgres", dir);
    const backends = ["backends:", `  main: ${main}`, `  side: ${side}`, "default: main"];
    const oldRules = config("old.yaml", [...backends, "routes:", "  - match: { resource: events }", "    backend: side"]);
    // kube-system events come back to main; team-* namespaces go to side
    const newRules = config("new.yaml", [
      ...backends,
      "routes:",
      "  - match: { resource: events, namespace: kube-system }",
      "    backend: main",
      "  - match: { resource: events }",
      "    backend: side",
      "  - match: { namespace: \"team-*\" }",
      "    backend: side",
    ]);
    s = await startStrata(["--config", oldRules]);
    const c = new Etcd3({ hosts: s.endpoint });
    const model: Model = new Map();
    try {
      // existing data: 3,000 keys over every prefix, some events on a lease
      const lease = c.lease(600, { autoKeepAlive: false });
      const leaseId = BigInt(await lease.grant());
      const leased: string[] = [];
      for (let i = 0; i < 3000; i += 100) {
        await Promise.all(Array.from({ length: 100 }, async (_, j) => {
          const key = `${KINDS[(i + j) % KINDS.length]}pre-${i + j}`;
          const onLease = key.startsWith("/registry/events/") && (i + j) % 10 === 3;
          const r = await c.kv.put({ key: b(key), value: b(`v${i + j}`), lease: onLease ? String(leaseId) : "0" } as never);
          if (onLease) leased.push(key);
          model.set(key, { value: `v${i + j}`, mod: BigInt(r.header.revision) });
        }));
      }
      const start = BigInt((await c.kv.range({ key: b("/registry/") } as never)).header.revision);

      // a watcher over everything from here on
      const seen: Array<{ key: string; rev: bigint; type: string }> = [];
      const watcher = await c.watch().prefix("/registry/").startRevision(String(start + 1n)).create();
      watcher.on("data", (res) => {
        for (const e of res.events) seen.push({ key: e.kv.key.toString(), rev: BigInt(e.kv.mod_revision), type: e.type });
      });

      // writers and a lister run before, during and after the migration
      let stopping = false;
      const acked: Array<{ key: string; rev: bigint }> = [];
      const latencies: number[] = [];
      const writers = Array.from({ length: 8 }, (_, id) => writer(c, id, model, acked, latencies, () => stopping));
      const listProblems: string[] = [];
      let lists = 0;
      const lister = (async () => {
        while (!stopping) {
          const r = await c.kv.range({ key: b("/registry/"), range_end: prefixEnd("/registry/"), keys_only: true } as never);
          const keys = r.kvs.map((kv: { key: Buffer }) => kv.key.toString());
          if (new Set(keys).size !== keys.length) listProblems.push(`a list showed ${keys.find((k: string, i: number) => keys.indexOf(k) !== i)} twice at revision ${r.header.revision}`);
          const pre = keys.filter((k: string) => k.includes("/pre-")).length;
          if (pre !== 3000) listProblems.push(`a list showed ${pre} of the 3000 keys nobody deletes at revision ${r.header.revision}`);
          if (Number(r.count) !== keys.length) listProblems.push(`count ${r.count} but ${keys.length} keys at revision ${r.header.revision}`);
          const page = await c.kv.range({ key: b("/registry/pods/"), range_end: prefixEnd("/registry/pods/"), limit: "50" } as never);
          if (page.kvs.length !== 50 || !page.more) listProblems.push(`a page of pods had ${page.kvs.length} keys, more=${page.more}`);
          lists++;
        }
      })();
      await sleep(700);

      const began = performance.now();
      const m = await cli("migrate", "--to-config", newRules, "--endpoint", `http://${s.endpoint}`);
      const took = performance.now() - began;
      expect(m.stderr).toContain("strata migrate: done:");
      expect(m.status).toBe(0);
      const during = latencies.length;
      await sleep(700);
      stopping = true;
      await Promise.all([...writers, lister]);

      const moved = Number(/done: (\d+) keys moved/.exec(m.stderr)![1]);
      console.log(`live migration: ${moved} keys moved in ${took.toFixed(0)} ms while ${acked.length} writes were acknowledged ` +
        `(write latency p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(0)} ms; ${lists} list rounds)\n` +
        m.stderr.split("\n").find((l) => l.includes("done:")));
      expect(moved).toBeGreaterThan(1000);
      expect(during).toBeGreaterThan(50);
      expect(listProblems).toEqual([]);

      // every acknowledged write, once, in revision order, then nothing else
      const until = acked.reduce((a, w) => (w.rev > a ? w.rev : a), 0n);
      for (let i = 0; i < 100 && !(seen.length > 0 && seen.at(-1)!.rev >= until); i++) await sleep(50);
      const wanted = acked.map((w) => `${w.rev}:${w.key}`).sort();
      expect(seen.map((e) => `${e.rev}:${e.key}`).sort()).toEqual(wanted);
      for (let i = 1; i < seen.length; i++) expect(seen[i]!.rev).toBeGreaterThan(seen[i - 1]!.rev);
      await watcher.cancel();

      // the final state is what the clients were told, prefix by prefix
      const all = await c.kv.range({ key: b("/registry/"), range_end: prefixEnd("/registry/") } as never);
      const got = new Map(all.kvs.map((kv: { key: Buffer; value: Buffer; mod_revision: string }) => [kv.key.toString(), `${kv.value}@${kv.mod_revision}`]));
      expect(got).toEqual(new Map([...model].map(([k, v]) => [k, `${v.value}@${v.mod}`])));
      for (const p of KINDS) {
        const r = await c.kv.range({ key: b(p), range_end: prefixEnd(p), count_only: true } as never);
        expect(`${p} ${r.count}`).toBe(`${p} ${[...model.keys()].filter((k) => k.startsWith(p)).length}`);
      }

      // each database holds exactly the keys the new rules give it
      const mainKeys = keysInSqlite(main.slice("sqlite://".length));
      const sql = postgres(side, { max: 1, onnotice: () => {} });
      const sideKeys = (await sql`SELECT k FROM kv`).map((r) => Buffer.from(r.k as Uint8Array).toString());
      await sql.end();
      const onSide = (k: string) => k.includes("/team-") || (k.startsWith("/registry/events/") && !k.startsWith("/registry/events/kube-system/"));
      const keys = [...model.keys()];
      expect(mainKeys.sort()).toEqual(keys.filter((k) => !onSide(k)).sort());
      expect(sideKeys.sort()).toEqual(keys.filter(onSide).sort());

      // the lease still holds its moved keys, and revoking it takes them all
      const stillLeased = leased.filter((k) => model.has(k));
      expect(stillLeased.some((k) => k.startsWith("/registry/events/kube-system/"))).toBe(true);
      const held = await c.kv.range({ key: b("/registry/events/"), range_end: prefixEnd("/registry/events/") } as never);
      expect(held.kvs.filter((kv: { lease: string }) => BigInt(kv.lease) === leaseId).length).toBe(stillLeased.length);
      await lease.revoke();
      const after = await c.kv.range({ key: b("/registry/events/"), range_end: prefixEnd("/registry/events/") } as never);
      expect(after.kvs.filter((kv: { lease: string }) => BigInt(kv.lease) === leaseId)).toEqual([]);
    } finally {
      c.close();
    }

    // a restart under the new rules finds every key where they look; the old rules are refused
    await s.stop();
    s = await startStrata(["--config", newRules]);
    await s.stop();
    s = undefined;
    const refused = await cli("serve", "--config", oldRules, "--listen", "http://127.0.0.1:1");
    expect(refused.stderr).toContain("would make existing keys unreachable");
    expect(refused.status).toBe(2);
  }, 180_000);

  test("rules it cannot reach by moving keys, and a broken file, are refused and change nothing", async () => {
    const one = await freshDatabase("sqlite", dir), two = await freshDatabase("sqlite", dir), three = await freshDatabase("sqlite", dir);
    const rules = config("running.yaml", ["backends:", `  main: ${one}`, `  side: ${two}`, "default: main"]);
    s = await startStrata(["--config", rules]);
    const c = new Etcd3({ hosts: s.endpoint });
    try {
      for (let i = 0; i < 20; i++) await c.put(`/registry/pods/team-a/p${i}`).value("v");
      const before = await c.kv.range({ key: b("/registry/"), range_end: prefixEnd("/registry/") } as never);
      const endpoint = `http://${s.endpoint}`;
      const cases: Array<[string, string[], string, number]> = [
        ["other-backends.yaml", ["backends:", `  main: ${one}`, `  side: ${three}`, "default: main"], "the backends differ from the running ones", 1],
        ["other-default.yaml", ["backends:", `  main: ${one}`, `  side: ${two}`, "default: side"], "the default backend differs", 1],
        ["unknown-backend.yaml", ["backends:", `  main: ${one}`, `  side: ${two}`, "default: main", "routes:", "  - match: { namespace: \"team-*\" }", "    backend: elsewhere"], "unknown-backend.yaml: routes[0].backend", 2],
        ["broken.yaml", ["backends: [", "default: main"], "broken.yaml: not valid YAML", 2],
      ];
      for (const [name, lines, message, status] of cases) {
        const r = await cli("migrate", "--to-config", config(name, lines), "--endpoint", endpoint);
        expect(r.stderr).toContain(message);
        expect(r.status).toBe(status);
      }
      const missing = await cli("migrate", "--to-config", join(dir, "absent.yaml"), "--endpoint", endpoint);
      expect(missing.stderr).toContain("absent.yaml: cannot read config file");
      expect(missing.status).toBe(2);
      const after = await c.kv.range({ key: b("/registry/"), range_end: prefixEnd("/registry/") } as never);
      expect(after).toEqual(before);
      // the running rules are still the old ones: a valid move afterwards still has keys to move
      const moved = await cli("migrate", "--to-config", config("ok.yaml", ["backends:", `  main: ${one}`, `  side: ${two}`, "default: main", "routes:", "  - match: { namespace: \"team-*\" }", "    backend: side"]), "--endpoint", endpoint);
      expect(moved.stderr).toContain("done: 20 keys moved");
      expect(moved.status).toBe(0);
    } finally {
      c.close();
      await s.stop();
      s = undefined;
    }
  }, 60_000);
});
