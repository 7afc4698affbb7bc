// One keyspace over SQLite, PostgreSQL and MariaDB: pods are split by namespace across the
// three, and the differential suite against a single real etcd runs on prefixes that span
// all of them (lists, pagination at a pinned revision, watch replay and live, prev_kv).
// Rows are then looked up in each database directly.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mysql from "mysql2/promise";
import postgres from "postgres";
import { attempt, b, differential, prefixEnd, sleep, useServers } from "../support/differential.ts";
import { create, modRevisionOf, pagedList, update } from "../support/kubernetes-ops.ts";
import { rawWatch } from "../support/raw-watch.ts";
import { freshDatabase } from "../support/strata.ts";
import { keysInSqlite } from "../support/stored-keys.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-routing-"));
const urls: Record<string, string> = {};

const sides = useServers({
  strataArgs: async () => {
    urls.main = await freshDatabase("sqlite", dir);
    urls.pg = await freshDatabase("postgres", dir);
    urls.maria = await freshDatabase("mariadb", dir);
    const config = join(dir, "strata.yaml");
    writeFileSync(config, [
      "backends:",
      `  main: ${urls.main}`,
      `  pg: ${urls.pg}`,
      `  maria: ${urls.maria}`,
      "default: main",
      "routes:",
      "  - match: { resource: pods, namespace: \"team-a*\" }",
      "    backend: pg",
      "  - match: { resource: pods, namespace: \"team-b*\" }",
      "    backend: maria",
      "  - match: { resource: events }",
      "    backend: pg",
      "",
    ].join("\n"));
    return ["--config", config];
  },
});

const NAMESPACES = ["default", "team-a1", "team-b1", "kube-system", "team-a2", "team-b2"];
async function until(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(5);
  }
}
const pod = (p: string, i: number) => `${p}${NAMESPACES[i % NAMESPACES.length]}/pod-${String(i).padStart(2, "0")}`;

describe("a keyspace split over SQLite, PostgreSQL and MariaDB", () => {
  test("list, count and sorted/limited reads over a prefix spanning all three", () =>
    differential(sides(), async (c) => {
      const p = "/registry/pods/";
      const out: unknown[] = [];
      for (let i = 0; i < 18; i++) out.push(await create(c, pod(p, i), `spec-${i}`));
      out.push(await create(c, pod(p, 3), "again"));
      const range = (extra: object) => attempt(c.kv.range({ key: b(p), range_end: prefixEnd(p), ...extra } as never));
      out.push(await range({}));
      out.push(await range({ count_only: true }));
      out.push(await range({ limit: 5 }));
      out.push(await range({ keys_only: true, limit: 7 }));
      out.push(await range({ sort_order: "Descend", sort_target: "Mod", limit: 4 }));
      out.push(await range({ sort_order: "Descend", sort_target: "Key", limit: 3 }));
      out.push(await range({ min_mod_revision: out[5] ? (out[5] as { header: { revision: string } }).header.revision : "0" }));
      // one namespace (one backend) and the whole keyspace
      out.push(await attempt(c.kv.range({ key: b(`${p}team-b1/`), range_end: prefixEnd(`${p}team-b1/`) } as never)));
      out.push(await attempt(c.kv.range({ key: b("\0"), range_end: b("\0"), count_only: true } as never)));
      return out;
    }, { order: true }));

  test("pagination at the first page's revision while writes land in every backend", async () => {
    const pages = await differential(sides(), async (c) => {
      const p = "/registry/pods/";
      for (let i = 18; i < 36; i++) await create(c, pod(p, i), `spec-${i}`);
      // later writes in each backend stay out of the pinned pages
      return pagedList(c, p, 4, async (n) => {
        await create(c, pod(p, 100 + n), "late");
        await attempt(c.kv.deleteRange({ key: b(pod(p, 18 + n)) } as never));
      });
    }, { order: true });
    expect((pages as unknown[]).length).toBeGreaterThan(5);
  });

  test("watch replay from a list's revision and a live watch: one revision order, prev_kv", async () => {
    const seen = await differential(sides(), async (c, ctx) => {
      const p = "/registry/pods/";
      const list = await c.kv.range({ key: b(p), range_end: prefixEnd(p), count_only: true } as never);
      const from = BigInt(list.header.revision) + 1n;
      const live = rawWatch(ctx.side.endpoint);
      live.send({ requestUnion: { case: "createRequest", value: { key: b(p), rangeEnd: prefixEnd(p), prevKv: true } } });
      await sleep(200);
      const writes: unknown[] = [];
      for (let i = 0; i < 6; i++) writes.push(await create(c, pod(p, 200 + i), `w-${i}`));
      for (let i = 0; i < 6; i++) {
        const k = pod(p, 200 + i);
        writes.push(await update(c, k, `w-${i}-2`, await modRevisionOf(c, k)));
      }
      writes.push(await attempt(c.kv.deleteRange({ key: b(pod(p, 201)), prev_kv: true } as never)));
      writes.push(await attempt(c.kv.deleteRange({ key: b(pod(p, 202)), prev_kv: true } as never)));
      const replay = rawWatch(ctx.side.endpoint);
      replay.send({ requestUnion: { case: "createRequest", value: { key: b(p), rangeEnd: prefixEnd(p), startRevision: from, prevKv: true } } });
      const events = async (w: typeof live) => {
        const deadline = Date.now() + 5000;
        const count = () => w.responses.reduce((n, r) => n + r.events.length, 0);
        while (count() < 14 && Date.now() < deadline) await sleep(20);
        await sleep(200);
        w.close();
        return w.responses.flatMap((r) => r.events.map((e) => ({ type: e.type, kv: e.kv, prevKv: e.prevKv })));
      };
      return { writes, live: await events(live), replay: await events(replay) };
    }, { order: true }) as { live: unknown[]; replay: unknown[] };
    expect(seen.live.length).toBe(14);
    expect(seen.replay.length).toBe(14);
  });

  test("after an acknowledged write, headers, a new watch and progress never report an older revision", async () => {
    for (const side of sides()) {
      const c = side.client;
      const lease = (await c.leaseClient.leaseGrant({ TTL: 60 } as never)).ID;
      const watch = rawWatch(side.endpoint);
      try {
        for (let i = 0; i < 10; i++) {
          // a write in PostgreSQL while the other backends are idle: the merged order lags behind it
          const put = await c.kv.put({ key: b(pod("/registry/pods/", 6 * i + 1)), value: b(`lag-${i}`) } as never);
          const acked = BigInt(put.header.revision);
          const ttl = await c.leaseClient.leaseTimeToLive({ ID: lease } as never);
          expect(BigInt(ttl.header.revision)).toBeGreaterThanOrEqual(acked);
          const seen = watch.responses.length;
          watch.send({ requestUnion: { case: "createRequest", value: { key: b("/registry/pods/"), rangeEnd: prefixEnd("/registry/pods/"), watchId: BigInt(100 + i) } } });
          const isCreated = (r: (typeof watch.responses)[number]) => r.created && r.watchId === BigInt(100 + i);
          await until(() => watch.responses.some(isCreated));
          const created = watch.responses.find(isCreated)!;
          expect(created.header!.revision).toBeGreaterThanOrEqual(acked);
          watch.send({ requestUnion: { case: "progressRequest", value: {} } });
          await until(() => watch.responses.some((r, j) => j > seen && r.watchId === -1n && !r.created));
          const progress = watch.responses.find((r, j) => j > seen && r.watchId === -1n && !r.created)!;
          expect(progress.header!.revision).toBeGreaterThanOrEqual(acked);
        }
        // a write acknowledged before a watch was created is not replayed to it; the next one is delivered
        const next = await c.kv.put({ key: b(pod("/registry/pods/", 0)), value: b("after") } as never);
        const after = BigInt(next.header.revision);
        await until(() => watch.responses.some((r) => r.events.length > 0 && r.watchId === 109n));
        await sleep(200);
        const delivered = watch.responses.filter((r) => r.watchId === 109n).flatMap((r) => r.events.map((e) => e.kv!.modRevision));
        expect(delivered).toEqual([after]);
      } finally {
        watch.close();
      }
    }
  });

  test("a txn whose keys are in two backends is refused, naming both; nothing is written", async () => {
    const c = sides()[1]!.client;
    const r = await attempt(c.kv.txn({
      compare: [],
      success: [
        { request_put: { key: b("/registry/pods/team-a1/x"), value: b("1") } },
        { request_put: { key: b("/registry/pods/team-b1/x"), value: b("1") } },
      ],
      failure: [],
    } as never));
    expect(String((r as { error: string }).error)).toMatch(/FAILED_PRECONDITION|spans backends/);
    expect(String((r as { error: string }).error)).toContain("pg and maria");
    expect((await c.kv.range({ key: b("/registry/pods/team-a1/x") } as never)).kvs.length).toBe(0);
  });

  test("rows are in the database the rules name", async () => {
    const c = sides()[1]!.client;
    await c.kv.put({ key: b("/registry/events/default/ev-1"), value: b("e") } as never);
    const sqliteKeys = () => keysInSqlite(urls.main!.slice("sqlite://".length));
    const sql = postgres(urls.pg!, { max: 1, onnotice: () => {} });
    const pgKeys = (await sql`SELECT k FROM kv`).map((r) => Buffer.from(r.k as Uint8Array).toString());
    await sql.end();
    const my = await mysql.createConnection(urls.maria!);
    const [rows] = await my.query("SELECT k FROM kv");
    const mariaKeys = (rows as Array<{ k: Buffer }>).map((r) => r.k.toString());
    await my.end();

    const ns = (k: string) => k.split("/")[3]!;
    const pods = (keys: string[]) => keys.filter((k) => k.startsWith("/registry/pods/"));
    expect(pods(pgKeys).length).toBeGreaterThan(0);
    expect(pods(mariaKeys).length).toBeGreaterThan(0);
    expect(pods(sqliteKeys()).length).toBeGreaterThan(0);
    expect(pods(pgKeys).every((k) => ns(k).startsWith("team-a"))).toBe(true);
    expect(pods(mariaKeys).every((k) => ns(k).startsWith("team-b"))).toBe(true);
    expect(pods(sqliteKeys()).every((k) => !ns(k).startsWith("team-a") && !ns(k).startsWith("team-b"))).toBe(true);
    expect(pgKeys).toContain("/registry/events/default/ev-1");
    expect(sqliteKeys()).not.toContain("/registry/events/default/ev-1");
    // and strata serves the union of the three
    const all = await c.kv.range({ key: b("/registry/pods/"), range_end: prefixEnd("/registry/pods/"), count_only: true } as never);
    expect(Number(all.count)).toBe(pods(pgKeys).length + pods(mariaKeys).length + pods(sqliteKeys()).length);
  });
});

