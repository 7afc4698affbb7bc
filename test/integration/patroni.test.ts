// A real Patroni (Debian's `patroni`, its etcd3 store, which speaks etcd's JSON gateway with
// its own HTTP client) keeps a PostgreSQL cluster's leader lock in strata: two nodes, one
// takes the lock and the other replicates from it; when the leader's Patroni and PostgreSQL
// die at once, the lock lapses with its lease and the other node takes it. The keys are the
// ones Patroni writes into etcd 3.4 for the same cluster (compared by hand, docs/http-gateway.md).
// Every wait is bounded by progress: the next state Patroni reaches, with a deadline.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../scripts/databases.ts";
import { etcdClient, startStrata, type StrataProcess } from "../support/strata.ts";
import { sleep } from "../support/wait.ts";

const SCOPE = "demo";
const TTL = 10;
/** what Patroni keeps under /service/demo/ with a leader and a replica, as with etcd 3.4 */
const CLUSTER_KEYS = ["config", "initialize", "leader", "members/pg0", "members/pg1", "status"];

interface Node {
  name: string;
  config: string;
  dataDir: string;
  api: string;
  child?: ChildProcess;
  log: string;
}

let strata: StrataProcess;
let dir: string;
const nodes: Node[] = [];

/** PostgreSQL refuses to run as root: as root, Patroni runs as the postgres user */
const owner = process.getuid?.() === 0
  ? { uid: Number(execFileSync("id", ["-u", "postgres"]).toString()), gid: Number(execFileSync("id", ["-g", "postgres"]).toString()) }
  : undefined;

beforeAll(async () => {
  const patroni = execFileSync("sh", ["-c", "command -v patroni || true"]).toString().trim();
  if (!patroni) throw new Error("patroni is not installed (Debian package patroni)");
  const pgRoot = "/usr/lib/postgresql";
  const version = existsSync(pgRoot) ? readdirSync(pgRoot).sort((a, b) => Number(b) - Number(a))[0] : undefined;
  if (!version) throw new Error("PostgreSQL is not installed (Debian package postgresql)");
  strata = await startStrata();
  dir = mkdtempSync(join(tmpdir(), "strata-patroni-"));
  for (const name of ["pg0", "pg1"]) {
    const home = join(dir, name);
    mkdirSync(home);
    const api = `127.0.0.1:${await freePort()}`;
    const pg = `127.0.0.1:${await freePort()}`;
    const config = join(home, "patroni.yml");
    // JSON is YAML: Patroni reads it as its configuration file
    writeFileSync(config, JSON.stringify({
      scope: SCOPE,
      namespace: "/service/",
      name,
      restapi: { listen: api, connect_address: api },
      etcd3: { hosts: strata.endpoint },
      bootstrap: {
        dcs: { ttl: TTL, loop_wait: 2, retry_timeout: 5, maximum_lag_on_failover: 1048576 },
        initdb: [{ encoding: "UTF8" }],
      },
      postgresql: {
        listen: pg,
        connect_address: pg,
        data_dir: join(home, "data"),
        bin_dir: join(pgRoot, version, "bin"),
        pgpass: join(home, "pgpass"),
        authentication: { superuser: { username: "postgres", password: "pw" }, replication: { username: "replicator", password: "pw" } },
        pg_hba: ["local all all trust", "host replication replicator 127.0.0.1/32 trust", "host all all 127.0.0.1/32 trust"],
        // a test cluster: no fsync, the socket in the node's own directory
        parameters: { unix_socket_directories: home, fsync: "off" },
      },
    }));
    if (owner) chownSync(home, owner.uid, owner.gid);
    nodes.push({ name, config, dataDir: join(home, "data"), api: `http://${api}`, log: "" });
  }
  if (owner) chownSync(dir, owner.uid, owner.gid);
  for (const node of nodes) {
    const child = spawn(patroni, [node.config], { ...owner, cwd: dir, env: { ...process.env, HOME: dir }, stdio: ["ignore", "pipe", "pipe"] });
    const keep = (d: Buffer) => (node.log = (node.log + d).slice(-20_000));
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    node.child = child;
  }
}, 60_000);

afterAll(async () => {
  for (const node of nodes) node.child?.kill("SIGTERM");
  // Patroni stops its PostgreSQL on SIGTERM; whatever is left after that is stopped at once
  const deadline = Date.now() + 20_000;
  while (nodes.some((n) => alive(n.child)) && Date.now() < deadline) await sleep(100);
  for (const node of nodes) {
    if (alive(node.child)) node.child!.kill("SIGKILL");
    stopPostgres(node, "SIGQUIT");
  }
  await strata?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

const alive = (c?: ChildProcess) => c !== undefined && c.exitCode === null && c.signalCode === null;

/** signals the node's postmaster, if it runs (its pid is the first line of postmaster.pid, which a killed one leaves behind) */
function stopPostgres(node: Node, signal: NodeJS.Signals): void {
  try {
    const pid = Number(readFileSync(join(node.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
    // the pid of a postmaster that is gone may since be another process's
    if (readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(node.dataDir)) process.kill(pid, signal);
  } catch {
    // not running
  }
}

/** the cluster's keys in strata, read over gRPC, relative to /service/demo/ → value */
async function clusterKeys(): Promise<Record<string, string>> {
  const c = etcdClient(strata.endpoint);
  try {
    return Object.fromEntries(Object.entries(await c.getAll().prefix(`/service/${SCOPE}/`).strings())
      .map(([k, v]) => [k.slice(`/service/${SCOPE}/`.length), v]));
  } finally {
    c.close();
  }
}

/** the node's REST answer to `path` (Patroni's health endpoints: 200 when the role matches) */
async function rest(node: Node, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  try {
    const res = await fetch(`${node.api}${path}`, { signal: AbortSignal.timeout(5_000) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  } catch {
    return { status: 0, body: {} };
  }
}

/** polls `probe` until it returns a value, or the deadline passes (then undefined) */
async function waitFor<T>(probe: () => Promise<T | undefined>, ms: number): Promise<T | undefined> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await probe();
    if (v !== undefined) return v;
    await sleep(200);
  }
  return undefined;
}

const logs = () => nodes.map((n) => `--- ${n.name}\n${n.log.slice(-3_000)}`).join("\n");

test("two Patroni nodes keep their leader lock in strata, replicate, and fail over when the leader dies", async () => {
  const start = Date.now();
  // one node initialises the cluster and takes the lock
  const leaderName = await waitFor(async () => (await clusterKeys()).leader, 60_000);
  if (!leaderName) throw new Error(`no leader key after 60 s\n${logs()}`);
  const tookLock = Date.now() - start;
  const leader = nodes.find((n) => n.name === leaderName)!;
  const replica = nodes.find((n) => n !== leader)!;
  // the other streams WAL from it (the leader's REST status lists its replication) and says it is a running replica
  const streaming = await waitFor(async () => {
    const { body } = await rest(leader, "/patroni");
    const repl = (body.replication ?? []) as Array<{ application_name: string; state: string }>;
    if (!repl.some((r) => r.application_name === replica.name && r.state === "streaming")) return undefined;
    return (await rest(replica, "/replica")).status === 200 ? true : undefined;
  }, 60_000);
  if (!streaming) throw new Error(`${replica.name} does not stream from ${leader.name}\n${logs()}`);
  const replicating = Date.now() - start;
  // every key Patroni keeps for a running cluster, and none other (the leader's status and each
  // member's state follow on their next loop)
  const member = (k: Record<string, string>, node: Node) => JSON.parse(k[`members/${node.name}`] ?? "{}") as Record<string, unknown>;
  const keys = await waitFor(async () => {
    const k = await clusterKeys();
    const settled = CLUSTER_KEYS.every((name) => name in k) && member(k, leader).state === "running" && member(k, replica).state === "running";
    return settled ? k : undefined;
  }, 30_000);
  expect(Object.keys(keys ?? {}).sort()).toEqual(CLUSTER_KEYS);
  expect(keys!.leader).toBe(leader.name);
  expect(member(keys!, leader)).toMatchObject({ role: "master", state: "running" });
  expect(member(keys!, replica)).toMatchObject({ role: "replica", state: "running" });

  // the leader's Patroni and PostgreSQL die at once: nothing deletes the lock, its lease lapses
  const killedAt = Date.now();
  leader.child!.kill("SIGKILL");
  stopPostgres(leader, "SIGKILL");
  const newLeader = await waitFor(async () => {
    const l = (await clusterKeys()).leader;
    return l !== undefined && l !== leader.name ? l : undefined;
  }, 60_000);
  if (!newLeader) throw new Error(`no new leader 60 s after ${leader.name} died\n${logs()}`);
  const failover = Date.now() - killedAt;
  expect(newLeader).toBe(replica.name);
  const promoted = await waitFor(async () => ((await rest(replica, "/primary")).status === 200 ? true : undefined), 30_000);
  expect(promoted).toBe(true);
  // the dead node's member key went with its lease
  expect(await waitFor(async () => (`members/${leader.name}` in (await clusterKeys()) ? undefined : true), 30_000)).toBe(true);
  console.log(`patroni on strata: leader lock after ${tookLock} ms, replica streaming after ${replicating} ms, failover ${failover} ms (ttl ${TTL} s)`);
}, 240_000);
