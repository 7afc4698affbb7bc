// The distributed SQL engines' profiles (cockroachdb://, yugabytedb://, tidb://), on
// simulations of the engines (none can be installed here): CockroachDB and YugabyteDB on a
// PostgreSQL with every transaction SERIALIZABLE, TiDB on MariaDB; both servers log every
// statement. Three strata processes share one database per profile: racing
// compare-and-swap stays exact, every process's watch sees the same history, the
// server's log holds none of what the engine lacks (LISTEN/NOTIFY and advisory locks;
// GET_LOCK), conflicts the server injects into a share of commits (each engine's
// retryable error codes) are retried with nothing applied twice and no revision skipped,
// and kill -9 of one process loses no acknowledged write. Last, how long a commit takes
// to reach a watcher on another process: PostgreSQL's NOTIFY path against the poll path.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { Etcd3 } from "etcd3";
import mysql from "mysql2/promise";
import postgres from "postgres";
import { type DatabaseServer, startMariadb, startPostgres } from "../../scripts/databases.ts";
import { startStrata, type StrataProcess } from "../support/strata.ts";

let pg: DatabaseServer;
let maria: DatabaseServer;
beforeAll(async () => {
  [pg, maria] = await Promise.all([
    startPostgres({ logStatements: true, settings: { default_transaction_isolation: "serializable" } }),
    startMariadb({ logStatements: true }),
  ]);
}, 60_000);
afterAll(async () => {
  await Promise.all([pg?.destroy(), maria?.destroy()]);
});

let databases = 0;
/** a fresh database on the profile's simulation, as the profile's URL and the wire's */
function freshDatabase(scheme: string): { url: string; wire: string } {
  const wire = (scheme === "tidb" ? maria : pg).createDatabase(`engines_${++databases}`);
  return { url: wire.replace(/^[a-z]+:/, `${scheme}:`), wire };
}

/** what the server logged from `from` (a byte offset) on */
function logSince(server: DatabaseServer, from: number): string {
  return readFileSync(server.log!, "utf8").slice(from);
}
const logSize = (server: DatabaseServer) => statSync(server.log!).size;

/** statements the engine lacks, as the server logs them */
const FORBIDDEN = {
  postgres: /\b(LISTEN|UNLISTEN|NOTIFY|pg_notify|pg_advisory\w*)\b/gi,
  mysql: /\b(GET_LOCK|RELEASE_LOCK|IS_FREE_LOCK|IS_USED_LOCK)\b/gi,
};

const until = async (cond: () => boolean, ms = 30_000) => {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
};

/** every event a watch of a prefix sees on one process, as one line each */
function record(c: Etcd3, prefix: string) {
  const events: string[] = [];
  const ready = c.watch().prefix(prefix).startRevision("1").withPreviousKV().create().then((w) => {
    w.on("put", (kv, prev) => events.push(`put ${kv.key} ${kv.value} @${kv.mod_revision} prev=${prev?.value ?? "-"}`));
    w.on("delete", (kv) => events.push(`del ${kv.key} @${kv.mod_revision}`));
    return w;
  });
  return { events, ready };
}

async function threeProcesses(url: string): Promise<{ procs: StrataProcess[]; clients: Etcd3[]; stop(): Promise<void> }> {
  // started together: the schema is created once, the others wait on the lease row
  const procs = await Promise.all([startStrata([], url), startStrata([], url), startStrata([], url)]);
  const clients = procs.map((p) => new Etcd3({ hosts: p.endpoint, retry: false } as never));
  return {
    procs,
    clients,
    stop: async () => {
      for (const c of clients) c.close();
      await Promise.all(procs.map((p) => p.stop()));
    },
  };
}

/**
 * A server-side fault: a share of commits fails with the engine's retryable errors, as
 * CockroachDB's 40001 at COMMIT (a deferred trigger) or TiDB's write conflicts. Each
 * injection is counted where a rollback does not undo it (a sequence; a MyISAM table).
 */
async function injectConflicts(wire: string, share: number): Promise<() => Promise<number>> {
  if (wire.startsWith("postgres")) {
    const sql = postgres(wire, { max: 1, onnotice: () => {} });
    await sql.unsafe(`CREATE SEQUENCE injected`);
    // half serialization failures (CockroachDB's and YugabyteDB's 40001), half deadlocks (40P01)
    await sql.unsafe(`CREATE FUNCTION inject_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE r double precision := random();
      BEGIN
        IF r < ${share / 2} THEN
          PERFORM nextval('injected');
          RAISE EXCEPTION 'restart transaction: injected' USING ERRCODE = '40001';
        ELSIF r < ${share} THEN
          PERFORM nextval('injected');
          RAISE EXCEPTION 'deadlock detected: injected' USING ERRCODE = '40P01';
        END IF;
        RETURN NEW;
      END $$`);
    await sql.unsafe(`CREATE CONSTRAINT TRIGGER inject_conflict AFTER INSERT ON commits DEFERRABLE INITIALLY DEFERRED
      FOR EACH ROW EXECUTE FUNCTION inject_conflict()`);
    return async () => {
      const [r] = await sql.unsafe(`SELECT last_value, is_called FROM injected`);
      const n = r!.is_called ? Number(r!.last_value) : 0;
      await sql.unsafe(`DROP TRIGGER inject_conflict ON commits`);
      await sql.end();
      return n;
    };
  }
  const conn = await mysql.createConnection(wire);
  await conn.query(`CREATE TABLE injected (code INT NOT NULL) ENGINE=MyISAM`);
  // the four codes TiDB documents as "retry the transaction", a quarter of the share each
  const branches = [9007, 8002, 8022, 1213].map((code, i) =>
    `${i === 0 ? "IF" : "ELSEIF"} r < ${(share * (i + 1)) / 4} THEN INSERT INTO injected VALUES (${code});
       SIGNAL SQLSTATE '${code === 1213 ? "40001" : "HY000"}' SET MYSQL_ERRNO = ${code}, MESSAGE_TEXT = 'injected conflict ${code}';`
  ).join("\n");
  await conn.query(`CREATE TRIGGER inject_conflict BEFORE INSERT ON commits FOR EACH ROW
    BEGIN
      DECLARE r DOUBLE DEFAULT RAND();
      ${branches}
      END IF;
    END`);
  return async () => {
    const [rows] = await conn.query(`SELECT code, COUNT(*) AS n FROM injected GROUP BY code`);
    const counts = rows as Array<{ code: number; n: number }>;
    await conn.query(`DROP TRIGGER inject_conflict`);
    await conn.end();
    // every code was injected, not only some
    expect(counts.map((c) => c.code).sort()).toEqual([1213, 8002, 8022, 9007]);
    return counts.reduce((sum, c) => sum + Number(c.n), 0);
  };
}

/** runs statements on the wire's URL; resolves to the rows of the last, counts as numbers */
async function rawStatements(wire: string, statements: string[]): Promise<Array<Record<string, unknown>>> {
  let rows: Array<Record<string, unknown>> = [];
  if (wire.startsWith("postgres")) {
    const sql = postgres(wire, { max: 1, onnotice: () => {} });
    for (const s of statements) rows = [...(await sql.unsafe(s))];
    await sql.end();
  } else {
    const conn = await mysql.createConnection(wire);
    for (const s of statements) {
      const [result] = await conn.query(s);
      rows = Array.isArray(result) ? (result as Array<Record<string, unknown>>) : [];
    }
    await conn.end();
  }
  return rows.map((r) => ("n" in r ? { ...r, n: Number(r.n) } : r));
}

const PROFILES = [
  { scheme: "cockroachdb", wire: "postgres" as const, simulation: "PostgreSQL, every transaction SERIALIZABLE" },
  { scheme: "yugabytedb", wire: "postgres" as const, simulation: "PostgreSQL, every transaction SERIALIZABLE" },
  { scheme: "tidb", wire: "mysql" as const, simulation: "MariaDB" },
];

for (const profile of PROFILES) {
  const server = () => (profile.wire === "mysql" ? maria : pg);

  describe(`${profile.scheme}:// on ${profile.simulation}`, () => {
    test("three processes racing compare-and-swap end exactly at N, with one history on all, and send nothing the engine lacks", async () => {
      const logStart = logSize(server());
      const { url } = freshDatabase(profile.scheme);
      const { clients, stop } = await threeProcesses(url);
      try {
        const watches = clients.map((c) => record(c, "cas/"));
        const watchers = await Promise.all(watches.map((w) => w.ready));
        const first = await clients[0]!.put("cas/counter").value("0").exec();
        const N = 90;
        let done = 0;
        const revisions: number[] = [];
        const worker = async (c: Etcd3) => {
          for (let tries = 0; done < N && tries < 20 * N; tries++) {
            const kv = (await c.get("cas/counter").exec()).kvs[0]!;
            const next = Number(kv.value.toString()) + 1;
            if (next > N) return;
            const r = await c.if("cas/counter", "Mod", "==", kv.mod_revision).then(c.put("cas/counter").value(String(next))).commit();
            if (r.succeeded) {
              done++;
              revisions.push(Number(r.header.revision));
            }
          }
        };
        await Promise.all(clients.flatMap((c) => [worker(c), worker(c), worker(c)]));
        expect(await clients[1]!.get("cas/counter").string()).toBe(String(N));
        // one revision per successful swap, the next ones after the first put: no gap
        const base = Number(first.header.revision);
        expect(revisions.sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => base + 1 + i));
        await until(() => watches.every((w) => w.events.length >= N + 1));
        for (const w of watches) expect(w.events).toEqual(watches[0]!.events);
        expect(watches[0]!.events.map((e) => e.split(" ")[2])).toEqual(Array.from({ length: N + 1 }, (_, i) => String(i)));
        await Promise.all(watchers.map((w) => w.cancel()));
      } finally {
        await stop();
      }
      // the server saw this run's statements, and none the engine lacks
      const log = logSince(server(), logStart);
      expect(log).toMatch(/FOR UPDATE/);
      expect(log.match(FORBIDDEN[profile.wire]) ?? []).toEqual([]);
    }, 120_000);

    test("conflicts injected into a share of commits are retried: every write applied once, revisions without a gap", async () => {
      const { url, wire } = freshDatabase(profile.scheme);
      const { clients, stop } = await threeProcesses(url);
      try {
        const start = Number((await clients[0]!.put("warm").value("up").exec()).header.revision);
        const injected = await injectConflicts(wire, 0.25);
        const watches = clients.map((c) => record(c, "inj/"));
        const watchers = await Promise.all(watches.map((w) => w.ready));
        const PER_WRITER = 15;
        // six writers per process, each a put of its own keys in order
        const acked: number[] = [];
        await Promise.all(clients.flatMap((c, p) =>
          Array.from({ length: 6 }, async (_, w) => {
            for (let i = 0; i < PER_WRITER; i++) {
              const r = await c.put(`inj/${p}-${w}/${String(i).padStart(3, "0")}`).value(String(i)).exec();
              acked.push(Number(r.header.revision));
            }
          })
        ));
        const count = await injected();
        const writes = 3 * 6 * PER_WRITER;
        expect(count).toBeGreaterThan(0); // the server really failed commits
        console.log(`${profile.scheme}: ${count} commits failed by the server's injected conflicts, each retried`);
        // each write acknowledged once, at its own revision, all of them the next ones
        expect(acked.sort((a, b) => a - b)).toEqual(Array.from({ length: writes }, (_, i) => start + 1 + i));
        // and stored once: each key at version 1
        const all = await clients[2]!.getAll().prefix("inj/").exec();
        expect(all.kvs.length).toBe(writes);
        expect(all.kvs.every((kv) => String(kv.version) === "1")).toBe(true);
        await until(() => watches.every((w) => w.events.length >= writes));
        for (const w of watches) expect(w.events).toEqual(watches[0]!.events);
        expect(watches[0]!.events.length).toBe(writes);
        await Promise.all(watchers.map((w) => w.cancel()));
      } finally {
        await stop();
      }
    }, 120_000);

    test("a schema lease left by a process that died, and the schema half made, are taken over and finished", async () => {
      const { url, wire } = freshDatabase(profile.scheme);
      await rawStatements(wire, [
        `CREATE TABLE schema_lease (id BIGINT NOT NULL PRIMARY KEY, holder VARCHAR(64) NOT NULL, expires_at BIGINT NOT NULL)`,
        `INSERT INTO schema_lease (id, holder, expires_at) VALUES (1, 'dead', ${Date.now() - 1000})`,
        `CREATE TABLE meta (name VARCHAR(64) NOT NULL PRIMARY KEY, num BIGINT NOT NULL)`,
      ]);
      const strata = await startStrata([], url);
      const client = new Etcd3({ hosts: strata.endpoint });
      try {
        const r = await client.put("k").value("v").exec();
        expect(r.header.revision).toBe("2");
        expect(await client.get("k").string()).toBe("v");
      } finally {
        client.close();
        await strata.stop();
      }
      // the lease is given back once the schema is made
      expect(await rawStatements(wire, ["SELECT COUNT(*) AS n FROM schema_lease"])).toEqual([{ n: 0 }]);
    }, 60_000);

    test("status counts the bytes stored and defragment answers, with what the engine has", async () => {
      const logStart = logSize(server());
      const { url } = freshDatabase(profile.scheme);
      const strata = await startStrata([], url);
      const client = new Etcd3({ hosts: strata.endpoint });
      try {
        const before = Number((await client.maintenance.status()).dbSize);
        await client.put("big").value("x".repeat(100_000)).exec();
        const after = Number((await client.maintenance.status()).dbSize);
        expect(after).toBeGreaterThan(before);
        await client.maintenance.defragment();
      } finally {
        client.close();
        await strata.stop();
      }
      // no VACUUM (CockroachDB has none, YugabyteDB ignores it), no PostgreSQL size functions
      if (profile.wire === "postgres") expect(logSince(server(), logStart).match(/\b(VACUUM|pg_database_size|pg_total_relation_size)\b/g) ?? []).toEqual([]);
    }, 60_000);

    test("kill -9 of one of three processes under load loses no acknowledged write", async () => {
      const { url } = freshDatabase(profile.scheme);
      const { procs, clients, stop } = await threeProcesses(url);
      try {
        const acked = new Map<string, number>();
        let stopping = false;
        const writer = async (c: Etcd3, name: string) => {
          for (let i = 0; !stopping && i < 10_000; i++) {
            const key = `kill/${name}/${i}`;
            try {
              const r = await c.put(key).value(name).exec();
              acked.set(key, Number(r.header.revision));
            } catch {
              if (c === clients[0]) return; // the killed process: this write was never acknowledged
            }
          }
        };
        const load = clients.flatMap((c, p) => Array.from({ length: 4 }, (_, w) => writer(c, `${p}-${w}`)));
        const loaded = Date.now() + 30_000;
        const fromVictim = () => [...acked.keys()].filter((k) => k.startsWith("kill/0-")).length;
        while ((fromVictim() < 100 || acked.size < 300) && Date.now() < loaded) await new Promise((r) => setTimeout(r, 20));
        procs[0]!.kill();
        // the survivors keep writing a little after the kill
        const after = acked.size;
        while (acked.size < after + 60 && Date.now() < loaded + 30_000) await new Promise((r) => setTimeout(r, 20));
        stopping = true;
        await Promise.all(load);
        expect(fromVictim()).toBeGreaterThanOrEqual(100);
        for (const c of clients.slice(1)) {
          const all = await c.getAll().prefix("kill/").exec();
          const stored = new Map(all.kvs.map((kv) => [kv.key.toString(), Number(kv.mod_revision)]));
          for (const [key, revision] of acked) expect(stored.get(key)).toBe(revision);
          // every stored write has its own revision, and none is missing in between
          const revs = [...stored.values()].sort((a, b) => a - b);
          expect(new Set(revs).size).toBe(revs.length);
          expect(revs.at(-1)! - revs[0]! + 1).toBe(revs.length);
        }
      } finally {
        await stop();
      }
    }, 180_000);
  });
}

/** how long a put through one process takes to reach a watcher on another: [median, p95, max] ms */
async function watchLatency(url: string, label: string): Promise<number[]> {
  // one after the other: the plain postgres:// backend on a server whose transactions are
  // all SERIALIZABLE cannot create its schema from two processes at once (the second reads
  // the schema version from a snapshot older than the first one's advisory lock)
  const a = await startStrata([], url);
  const b = await startStrata([], url);
  const writer = new Etcd3({ hosts: a.endpoint });
  const reader = new Etcd3({ hosts: b.endpoint });
  try {
    const seen = new Map<string, number>();
    const watcher = await reader.watch().prefix("lat/").create();
    watcher.on("put", (kv) => seen.set(kv.key.toString(), performance.now()));
    const samples: number[] = [];
    for (let i = 0; i < 40; i++) {
      const key = `lat/${i}`;
      const sent = performance.now();
      await writer.put(key).value("x").exec();
      await until(() => seen.has(key), 10_000);
      expect(seen.has(key)).toBe(true);
      samples.push(seen.get(key)! - sent);
      // out of step with the poll, so the samples spread over its interval
      await new Promise((r) => setTimeout(r, Math.random() * 20));
    }
    await watcher.cancel();
    samples.sort((x, y) => x - y);
    const at = (q: number) => Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!);
    const figures = [at(0.5), at(0.95), Math.round(samples.at(-1)!)];
    console.log(`watch latency across processes, ${label}: median ${figures[0]} ms, p95 ${figures[1]} ms, max ${figures[2]} ms`);
    return figures;
  } finally {
    writer.close();
    reader.close();
    await Promise.all([a.stop(), b.stop()]);
  }
}

describe("watch latency across processes", () => {
  test("PostgreSQL's NOTIFY path, the profiles' revision poll, and MySQL's poll", async () => {
    // the plain postgres:// backend on the same server: NOTIFY, and so a log that shows the
    // statement check above can fail
    const logStart = logSize(pg);
    const notify = await watchLatency(pg.createDatabase(`engines_${++databases}`), "postgres:// (NOTIFY)");
    expect((logSince(pg, logStart).match(FORBIDDEN.postgres) ?? []).length).toBeGreaterThan(0);
    const polled = await watchLatency(freshDatabase("cockroachdb").url, "cockroachdb:// (poll, 50 ms)");
    await watchLatency(maria.createDatabase(`engines_${++databases}`), "mysql:// (poll, 100 ms)");
    await watchLatency(freshDatabase("tidb").url, "tidb:// (poll, 50 ms)");
    // the poll path, not PostgreSQL's one-second safety poll: its median is well under it
    expect(polled[0]!).toBeLessThan(500);
    expect(notify[0]!).toBeLessThan(500);
  }, 180_000);
});
