// Upgrading strata (docs/upgrading.md). A database written by the strata of the previous
// schema version (test/fixtures/upgrade: made from that code by scripts/upgrade-fixtures.ts;
// on NATS its log and the snapshot its compaction stored) is opened by today's strata: an etcd client sees exactly what it saw before — every key
// with its revisions and version, the history since the compaction, the leases with their
// keys, the compact revision, the cluster and member IDs — and the database is at today's
// schema. A database of a newer schema is refused with the line the doc quotes, and left
// as it was. On PostgreSQL and MariaDB, several of today's processes started at once on
// the old database: one migrates, all serve, no write is lost.
import { afterEach, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { SCHEMA_VERSION } from "../../src/backends/sql/schema.ts";
import { type DatabaseServer, startNats } from "../../scripts/databases.ts";
import { rawSql } from "../contract/harness.ts";
import { strataCli } from "../support/cli.ts";
import { BACKEND, etcdClient, freshBackendUrl, startStrata, type StrataProcess } from "../support/strata.ts";
import { type KeyspaceState, keyspaceState } from "../support/upgrade-state.ts";
import { sleep } from "../support/wait.ts";

const ROOT = resolve(import.meta.dir, "../..");
const FIXTURES = join(ROOT, "test/fixtures/upgrade/schema-4");
const KINDS = ["sqlite", "postgres", "mariadb", "nats"];
/** NATS's fixture: the bucket scripts/upgrade-fixtures.ts wrote */
const NATS_BUCKET = "strata_fixture";

/** a fixture's JSON: what the previous strata answered, its schema version and commit */
interface Fixture extends KeyspaceState {
  schemaVersion: number;
  commit: string;
}

const expected = (): Fixture => JSON.parse(readFileSync(join(FIXTURES, `${BACKEND}.json`), "utf8"));

const dirs: string[] = [];
const running: StrataProcess[] = [];
const natsServers: DatabaseServer[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
  for (const n of natsServers.splice(0)) await n.destroy();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** a new database holding the fixture of the backend under test; its URL */
async function loadFixture(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "strata-upgrade-"));
  dirs.push(dir);
  if (BACKEND === "sqlite") {
    const file = join(dir, "strata.db");
    copyFileSync(join(FIXTURES, "sqlite.db"), file);
    return `sqlite://${file}`;
  }
  if (BACKEND === "nats") {
    // a NATS server of its own, on a copy of the fixture's store (its log and snapshot)
    execFileSync("tar", ["-xzf", join(FIXTURES, "nats.tar.gz"), "-C", dir]);
    const server = await startNats({ storeDir: join(dir, "jetstream") });
    natsServers.push(server);
    return server.createDatabase(NATS_BUCKET) + "&snapshot-count=5";
  }
  const url = await freshBackendUrl(dir);
  const u = new URL(url);
  const dump = readFileSync(join(FIXTURES, `${BACKEND}.sql`));
  if (BACKEND === "postgres") {
    execFileSync("psql", ["-q", "-v", "ON_ERROR_STOP=1", "-h", u.hostname, "-p", u.port, "-U", u.username, "-d", u.pathname.slice(1)], { input: dump, stdio: ["pipe", "ignore", "pipe"] });
  } else {
    execFileSync("mariadb", ["--no-defaults", "-h", u.hostname, "-P", u.port, `-u${u.username}`, `-p${u.password}`, u.pathname.slice(1)], { input: dump, stdio: ["pipe", "ignore", "pipe"] });
  }
  return url;
}

async function schemaVersion(url: string): Promise<number> {
  const [rows] = (await rawSql(url, ["SELECT num FROM meta WHERE name = 'schema_version'"]))!;
  return Number(rows![0]!.num);
}

/** the indexes of that name in the database (SQLite's, PostgreSQL's or MariaDB's catalog) */
async function indexes(url: string, name: string): Promise<string[]> {
  const query = BACKEND === "sqlite"
    ? "SELECT name FROM sqlite_master WHERE type = 'index' AND name = ?"
    : BACKEND === "postgres"
    ? "SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public' AND indexname = ?"
    : "SELECT DISTINCT index_name AS name FROM information_schema.statistics WHERE table_schema = DATABASE() AND index_name = ?";
  const [rows] = (await rawSql(url, [query.replace("?", `'${name}'`)]))!;
  return rows!.map((r) => String(r.name));
}

/** everything in the database, to compare before and after: the file's bytes, or a dump */
function contents(url: string): Buffer {
  const u = new URL(url);
  if (BACKEND === "sqlite") return readFileSync(u.pathname);
  if (BACKEND === "postgres") {
    // the dump's \restrict key is new at every run
    const dump = execFileSync("pg_dump", ["--no-owner", "-h", u.hostname, "-p", u.port, "-U", u.username, u.pathname.slice(1)]).toString();
    return Buffer.from(dump.replace(/^\\(un)?restrict .*$/gm, ""));
  }
  return execFileSync("mariadb-dump", ["--no-defaults", "-h", u.hostname, "-P", u.port, `-u${u.username}`, `-p${u.password}`, "--hex-blob", "--skip-comments", "--skip-dump-date", u.pathname.slice(1)]);
}

/** what today's strata at s answers, beside what the previous one answered */
async function expectSameKeyspace(s: StrataProcess, want: Fixture): Promise<void> {
  const c = etcdClient(s.endpoint);
  try {
    const { schemaVersion: _, commit: __, ...before } = want;
    expect(await keyspaceState(s.endpoint, c)).toEqual(before);
  } finally {
    c.close();
  }
}

describe.skipIf(!KINDS.includes(BACKEND))(`upgrading a database of the previous schema, on ${BACKEND}`, () => {
  test("the fixture is the previous schema's", () => {
    const want = expected();
    // a new schema version needs fixtures of the one before it: test/fixtures/upgrade/README.md
    expect(want.schemaVersion).toBe(SCHEMA_VERSION - 1);
    // the workload of scripts/upgrade-fixtures.ts: a compaction, history after it, leases with keys
    expect(BigInt(want.compactRevision)).toBeGreaterThan(0n);
    expect(want.events.length).toBeGreaterThan(0);
    expect(want.leases.some((l) => l.keys.length > 0)).toBe(true);
  });

  test("today's strata opens it: the same keys, history, leases, compact revision and IDs; the schema is today's", async () => {
    const url = await loadFixture();
    const want = expected();
    // NATS: the schema is that of the snapshot, which the process's copy starts from
    const sql = BACKEND !== "nats";
    if (sql) expect(await schemaVersion(url)).toBe(want.schemaVersion);
    if (sql) expect(await indexes(url, DROPPED_INDEX)).toEqual([DROPPED_INDEX]);
    const s = await startStrata([], url);
    running.push(s);
    await expectSameKeyspace(s, want);
    expect(s.stderr()).toContain(`"msg":"database schema upgraded"`);
    expect(s.stderr()).toContain(`"from":${want.schemaVersion},"to":${SCHEMA_VERSION}`);
    if (sql) expect(await schemaVersion(url)).toBe(SCHEMA_VERSION);
    if (sql) expect(await indexes(url, DROPPED_INDEX)).toEqual([]);

    // writes go on from the old revision, and etcd's auth store (schema 4) works
    const c = etcdClient(s.endpoint);
    try {
      await c.user("upgrade-user").create("pw");
      await c.role("upgrade-role").create();
      expect((await c.getUsers()).map((u) => u.name)).toEqual(["upgrade-user"]);
      const put = await c.kv.put({ key: Buffer.from("/registry/after-upgrade"), value: Buffer.from("x") });
      expect(put.header.revision).toBe(String(BigInt(want.revision) + 1n));
    } finally {
      c.close();
    }
    // restarted, it opens its own schema without migrating again
    expect(await s.terminate()).toBe(0);
    await s.restart();
    const c2 = etcdClient(s.endpoint);
    try {
      expect((await c2.getUsers()).map((u) => u.name)).toEqual(["upgrade-user"]);
      expect(String((await c2.kv.range({ key: Buffer.from("/registry/after-upgrade") })).kvs[0]!.mod_revision)).toBe(String(BigInt(want.revision) + 1n));
    } finally {
      c2.close();
    }
    // on NATS each start loads the old snapshot again (until a compaction stores a new one)
    if (sql) expect(s.stderr().match(/database schema upgraded/g)?.length).toBe(1);
  });

  // NATS's schema is its snapshots': a newer one is refused by the same check, not tested here
  test.skipIf(BACKEND === "nats")("a database of a newer schema is refused with the doc's line, and nothing in it changes", async () => {
    const url = await loadFixture();
    const newer = SCHEMA_VERSION + 1;
    await rawSql(url, [`UPDATE meta SET num = ${newer} WHERE name = 'schema_version'`]);
    const before = contents(url);
    const r = await strataCli("serve", "--listen", "http://127.0.0.1:0", "--metrics-listen", "", "--backend", url);
    expect(r.status).not.toBe(0);
    // the line docs/upgrading.md quotes, for this database
    const doc = readFileSync(join(ROOT, "docs/upgrading.md"), "utf8");
    const quoted = doc.match(/^strata: cannot start: .*$/m)![0];
    const docUrl = quoted.match(/backend (\S+):/)![1]!;
    const shown = BACKEND === "sqlite" ? url : r.stderr.match(/backend (\S+):/)?.[1] ?? "(no backend named)";
    const line = quoted.replaceAll(docUrl, shown).replace(/version \d+ is newer than this strata's \(\d+\)/, `version ${newer} is newer than this strata's (${SCHEMA_VERSION})`);
    expect(quoted).toMatch(/version \d+ is newer than this strata's \(\d+\); upgrade strata$/);
    expect(r.stderr.trim().split("\n")).toContain(line);
    expect(contents(url).equals(before)).toBe(true);
    if (BACKEND === "sqlite") {
      // nor anything waiting in a write-ahead log
      const wal = new URL(url).pathname + "-wal";
      expect(existsSync(wal) ? statSync(wal).size : 0).toBe(0);
    }
    expect(await schemaVersion(url)).toBe(newer);
  });
});

/** the unique index (k, prev_rev) that schema 5 dropped (src/backends/sql/schema.ts) */
const DROPPED_INDEX = "kv_log_key_prev";

/**
 * A dump without the dropped index's lines, and without what its removal changes besides:
 * the comment and blank lines around pg_dump's statement, the comma after the key before
 * it in mariadb-dump's CREATE TABLE. Sorted lines, as dumpTables gives them.
 */
function withoutDroppedIndex(dump: string): string {
  return dump.split("\n").filter((l) => !l.includes(DROPPED_INDEX) && l !== "--" && l !== "").map((l) => l.replace(/,$/, "")).sort().join("\n");
}

/** how each database server shows an old process's tables, and holds them still */
interface ServerSide {
  /** the tables of the database with their indexes and rows, as the dump's lines sorted (an updated row moves) */
  dumpTables(url: string, tables: string[]): string;
  /** the line of the dump that holds the schema version */
  versionLine(v: number): string;
  /** runs `whileHeld` with the table meta locked against reading; `waiting`: how many sessions wait for it */
  holdMeta(url: string, whileHeld: (waiting: () => Promise<number>) => Promise<void>): Promise<void>;
}

const SIDES: Record<string, ServerSide> = {
  postgres: {
    dumpTables: (url, tables) => {
      const u = new URL(url);
      const args = tables.flatMap((t) => ["-t", `public.${t}`]);
      return execFileSync("pg_dump", ["--no-owner", ...args, "-h", u.hostname, "-p", u.port, "-U", u.username, u.pathname.slice(1)])
        .toString().replace(/^\\(un)?restrict .*$/gm, "").split("\n").sort().join("\n");
    },
    versionLine: (v) => `schema_version\t${v}`,
    holdMeta: async (url, whileHeld) => {
      const sql = (await import("postgres")).default(url, { max: 2, onnotice: () => {} });
      try {
        await sql.begin(async (tx) => {
          await tx`LOCK TABLE meta IN ACCESS EXCLUSIVE MODE`;
          await whileHeld(async () => Number((await sql`SELECT count(*) AS n FROM pg_locks WHERE relation = 'meta'::regclass AND NOT granted`)[0]!.n));
        });
      } finally {
        await sql.end();
      }
    },
  },
  mariadb: {
    dumpTables: (url, tables) => {
      const u = new URL(url);
      return execFileSync("mariadb-dump", [
        "--no-defaults", "-h", u.hostname, "-P", u.port, `-u${u.username}`, `-p${u.password}`,
        "--hex-blob", "--skip-comments", "--skip-dump-date", "--skip-extended-insert", u.pathname.slice(1), ...tables,
      ]).toString().split("\n").sort().join("\n");
    },
    versionLine: (v) => `INSERT INTO \`meta\` VALUES ('schema_version',${v});`,
    holdMeta: async (url, whileHeld) => {
      const mysql = await import("mysql2/promise");
      const [holder, observer] = [await mysql.createConnection(url), await mysql.createConnection(url)];
      try {
        await holder.query("LOCK TABLES meta WRITE");
        await whileHeld(async () => {
          const [rows] = await observer.query(
            "SELECT COUNT(*) AS n FROM information_schema.processlist WHERE db = DATABASE() AND state = 'Waiting for table metadata lock'",
          );
          return Number((rows as Array<{ n: number }>)[0]!.n);
        });
        await holder.query("UNLOCK TABLES");
      } finally {
        await holder.end();
        await observer.end();
      }
    },
  },
};

// The previous code cannot run here (the test needs no git history), so an old process is
// judged by what it would see: its tables exactly as it left them. Today's processes
// started together on the old database are run for real.
describe.skipIf(!SIDES[BACKEND])(`a rolling upgrade: several processes on one ${BACKEND} database of the previous schema`, () => {
  test("three started at once: one migrates, the old schema's tables stay as they were, all serve the same keyspace, no write lost", async () => {
    const side = SIDES[BACKEND]!;
    const url = await loadFixture();
    const want = expected();
    const [tableRows] = (await rawSql(url, ["SELECT table_name AS t FROM information_schema.tables WHERE table_schema = " +
      (BACKEND === "postgres" ? "'public'" : "DATABASE()") + " ORDER BY 1"]))!;
    const oldTables = tableRows!.map((r) => String(r.t));
    const before = side.dumpTables(url, oldTables);

    // "at once" made sure of: the table meta locked until all three wait to read the schema
    // version from it, so all three find the previous version and reach the migration together
    let starting: Promise<PromiseSettledResult<StrataProcess>[]> | undefined;
    await side.holdMeta(url, async (waiting) => {
      starting = Promise.allSettled([0, 1, 2].map(() => startStrata([], url)));
      for (let i = 0; i < 600 && (await waiting()) < 3; i++) await sleep(100);
      expect(await waiting()).toBeGreaterThanOrEqual(3);
    });
    const started = await starting!;
    const procs = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    running.push(...procs);
    for (const r of started) if (r.status === "rejected") throw r.reason;
    expect(procs.filter((p) => p.stderr().includes(`"msg":"database schema upgraded"`)).length).toBe(1);
    expect(await schemaVersion(url)).toBe(SCHEMA_VERSION);
    // what an old process reads is unchanged but for the version it checked at its start
    // and the index schema 5 dropped, which it never read
    const after = side.dumpTables(url, oldTables);
    expect(before).toContain(side.versionLine(want.schemaVersion));
    expect(before).toContain(DROPPED_INDEX);
    expect(after).not.toContain(DROPPED_INDEX);
    const upgraded = before.replace(side.versionLine(want.schemaVersion), side.versionLine(SCHEMA_VERSION));
    expect(withoutDroppedIndex(after)).toBe(withoutDroppedIndex(upgraded));
    expect(after).not.toBe(before);
    for (const p of procs) await expectSameKeyspace(p, want);

    // writes through all three at once: each acknowledged revision once, all seen by each
    const clients = procs.map((p) => etcdClient(p.endpoint));
    try {
      const acks = (await Promise.all(clients.map(async (c, i) => {
        const out: [string, string][] = [];
        for (let j = 0; j < 20; j++) {
          const key = `/registry/rolling/${i}/${j}`;
          out.push([key, String((await c.kv.put({ key: Buffer.from(key), value: Buffer.from(key) })).header.revision)]);
        }
        return out;
      }))).flat();
      const first = BigInt(want.revision) + 1n;
      expect(acks.map(([, r]) => BigInt(r)).sort((a, b) => (a < b ? -1 : 1))).toEqual(acks.map((_, i) => first + BigInt(i)));
      for (const c of clients) {
        const got = await c.kv.range({ key: Buffer.from("/registry/rolling/"), range_end: Buffer.from("/registry/rolling0") });
        expect(got.kvs.map((kv) => [kv.key.toString(), String(kv.mod_revision)]).sort()).toEqual([...acks].sort());
      }
    } finally {
      for (const c of clients) c.close();
    }
  });
});
