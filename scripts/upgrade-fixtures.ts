// Writes the fixtures of test/integration/upgrade.test.ts: databases left by the strata of
// the previous schema version, on SQLite, PostgreSQL, MariaDB and NATS JetStream. The
// previous code is
// checked out from git into a temporary worktree and run as it was (its own test
// launcher starts its own src/main.ts); a workload of keys, history, leases and a
// compaction goes through an etcd client; what the client then sees is recorded beside
// each database (test/support/upgrade-state.ts), and the database is kept: the SQLite
// file compacted, PostgreSQL and MariaDB as dumps, NATS's store directory (its log and the
// snapshot its compaction stored) as a tar. Needs git history (not a shallow clone).
//   bun scripts/upgrade-fixtures.ts            # the commit below
//   bun scripts/upgrade-fixtures.ts COMMIT
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Database } from "bun:sqlite";
import type { Etcd3 } from "etcd3";
import { type DatabaseServer, startMariadb, startNats, startPostgres } from "./databases.ts";
import { keyspaceState } from "../test/support/upgrade-state.ts";

/** a commit with schema version 4, from before the unique index (k, prev_rev) was dropped (schema 5) */
const PREVIOUS = "14f060d00cb9e7620986133d8b3255b2e6491cf5";
const ROOT = resolve(import.meta.dir, "..");
const OUT = join(ROOT, "test/fixtures/upgrade/schema-4");

const git = (...args: string[]) => execFileSync("git", ["-C", ROOT, ...args], { stdio: ["ignore", "pipe", "pipe"] }).toString().trim();
const enc = (s: string) => Buffer.from(s);
/** the NATS fixture's bucket (test/integration/upgrade.test.ts names it too) */
const NATS_BUCKET = "strata_fixture";
/** long enough never to expire while the fixture is in use (etcd's maximum is 9e9 s) */
const FOREVER = 3_000_000_000;

/**
 * Keys created, overwritten and deleted, some in one transaction, one binary; leases with
 * and without keys, one revoked; a compaction in the middle, and writes after it.
 */
async function workload(c: Etcd3): Promise<void> {
  const put = (k: string | Buffer, v: string | Buffer, lease?: string) => c.kv.put({ key: enc(k as string), value: enc(v as string), ...(lease ? { lease } : {}) });
  for (let i = 0; i < 12; i++) await put(`/registry/pods/default/pod-${i}`, `pod ${i} v1`);
  for (let i = 0; i < 12; i += 3) await put(`/registry/pods/default/pod-${i}`, `pod ${i} v2`);
  await c.kv.deleteRange({ key: enc("/registry/pods/default/pod-1") });
  await c.kv.txn({
    success: [1, 2, 3].map((i) => ({ request_put: { key: enc(`/registry/configmaps/kube-system/cm-${i}`), value: enc(`cm ${i}`) } })),
  });
  await put(Buffer.from([0x2f, 0x62, 0x00, 0xff, 0x01]), Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a]));
  await c.leaseClient.leaseGrant({ ID: 7001, TTL: FOREVER });
  await c.leaseClient.leaseGrant({ ID: 7002, TTL: FOREVER });
  await c.leaseClient.leaseGrant({ ID: 7003, TTL: FOREVER });
  await put("/registry/leases/kube-node-lease/node-a", "lease a", "7001");
  await put("/registry/leases/kube-node-lease/node-b", "lease b", "7001");
  await put("/registry/events/default/ev-1", "event 1", "7003");
  await c.leaseClient.leaseRevoke({ ID: 7003 });
  for (let i = 0; i < 12; i += 4) await put(`/registry/pods/default/pod-${i}`, `pod ${i} v3`);
  const { header } = await c.kv.range({ key: enc("/registry/pods/default/pod-0") });
  await c.kv.compact({ revision: header.revision, physical: true });
  // the history a watch from the compact revision replays
  await put("/registry/pods/default/pod-0", "pod 0 v4");
  await c.kv.deleteRange({ key: enc("/registry/configmaps/kube-system/cm-"), range_end: enc("/registry/configmaps/kube-system/cm.") });
  await c.kv.txn({
    compare: [{ key: enc("/registry/pods/default/pod-2"), target: "Version", result: "Equal", version: 1 }],
    success: [
      { request_put: { key: enc("/registry/pods/default/pod-2"), value: enc("pod 2 v2") } },
      { request_put: { key: enc("/registry/pods/default/pod-12"), value: enc("pod 12 v1") } },
    ],
  });
  await put("/registry/leases/kube-node-lease/node-c", "lease c", "7001");
  await put("/registry/pods/default/pod-5", "pod 5 v2");
}

interface Target {
  name: string;
  /** a fresh database of the kind, and its server (none for SQLite) */
  create(dir: string): Promise<{ url: string; server?: DatabaseServer }>;
  /** writes the fixture of the database at url into OUT */
  keep(url: string, server?: DatabaseServer, dir?: string): void | Promise<void>;
}

const TARGETS: Target[] = [
  {
    name: "sqlite",
    create: async (dir) => ({ url: `sqlite://${join(dir, "strata.db")}` }),
    keep: (url) => {
      const file = join(OUT, "sqlite.db");
      rmSync(file, { force: true });
      const db = new Database(url.slice("sqlite://".length), { readonly: true });
      db.exec(`VACUUM INTO '${file}'`);
      db.close();
      // VACUUM INTO writes a rollback-journal file; strata leaves its files in WAL mode
      const copy = new Database(file);
      copy.exec("PRAGMA journal_mode = WAL");
      copy.close();
    },
  },
  {
    name: "postgres",
    create: async () => {
      const server = await startPostgres();
      return { url: server.createDatabase("strata_fixture"), server };
    },
    keep: (url) => {
      const u = new URL(url);
      const dump = execFileSync("pg_dump", ["--no-owner", "--no-privileges", "--no-comments", "-h", u.hostname, "-p", u.port, "-U", u.username, u.pathname.slice(1)]);
      // psql's \restrict guard (a new random key each dump) is unknown to psql before 15.14:
      // this dump is ours, so it goes, and the fixture loads with any psql
      writeFileSync(join(OUT, "postgres.sql"), dump.toString().replace(/^\\(un)?restrict .*\n/gm, ""));
    },
  },
  {
    name: "mariadb",
    create: async () => {
      const server = await startMariadb();
      return { url: server.createDatabase("strata_fixture"), server };
    },
    keep: (url) => {
      const u = new URL(url);
      const dump = execFileSync("mariadb-dump", [
        "--no-defaults", "-h", u.hostname, "-P", u.port, `-u${u.username}`, `-p${u.password}`,
        "--hex-blob", "--skip-comments", "--skip-dump-date", "--single-transaction", u.pathname.slice(1),
      ]);
      // the sandbox-mode line of mariadb-dump 10.11.8+ stops older clients; the dump is ours
      writeFileSync(join(OUT, "mariadb.sql"), dump.toString().replace(/^\/\*M!999999\\- enable the sandbox mode \*\/ *\n/m, ""));
    },
  },
  {
    // the JetStream store: the log, and the snapshot a compaction stored (snapshot-count=5
    // makes the workload's compaction store one and purge the log before it)
    name: "nats",
    create: async (dir) => {
      const server = await startNats({ storeDir: join(dir, "jetstream") });
      return { url: server.createDatabase(NATS_BUCKET).replace(/$/, "&snapshot-count=5"), server };
    },
    keep: async (_url, server, dir) => {
      await server!.stop();
      const file = join(OUT, "nats.tar.gz");
      execFileSync("tar", ["--sort=name", "--owner=0", "--group=0", "--mtime=2026-01-01", "-czf", file, "-C", dir!, "jetstream"]);
    },
  },
];

const commit = process.argv[2] ?? PREVIOUS;
const tree = mkdtempSync(join(tmpdir(), "strata-previous-"));
git("worktree", "add", "--detach", tree, commit);
symlinkSync(join(ROOT, "node_modules"), join(tree, "node_modules"));
mkdirSync(OUT, { recursive: true });
try {
  const schema = execFileSync("git", ["-C", tree, "show", "HEAD:src/backends/sql/schema.ts"]).toString().match(/SCHEMA_VERSION = (\d+)/)![1];
  console.log(`previous strata: ${git("log", "-1", "--format=%h %s", commit).slice(0, 100)} (schema ${schema})`);
  // the previous code's own launcher, so its own src/main.ts serves
  const { startStrata, etcdClient } = await import(join(tree, "test/support/strata.ts"));
  for (const t of TARGETS) {
    const dir = mkdtempSync(join(tmpdir(), "strata-fixture-"));
    const { url, server } = await t.create(dir);
    try {
      const strata = await startStrata([], url);
      const client: Etcd3 = etcdClient(strata.endpoint);
      await workload(client);
      const state = await keyspaceState(strata.endpoint, client);
      client.close();
      await strata.stop();
      writeFileSync(join(OUT, `${t.name}.json`), JSON.stringify({ schemaVersion: Number(schema), commit, ...state }, null, 1) + "\n");
      await t.keep(url, server, dir);
      console.log(`${t.name}: revision ${state.revision}, compacted at ${state.compactRevision}, ${state.kvs.length} keys, ${state.events.length} events, ${state.leases.length} leases`);
    } finally {
      await server?.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  }
} finally {
  git("worktree", "remove", "--force", tree);
}
