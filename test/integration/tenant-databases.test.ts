// The multi-tenant recipe of docs/auth.md: two tenants (kube-apiservers with --etcd-prefix
// /tenant-a/registry and /tenant-b/registry) on one strata, each with a client certificate
// whose CN is its etcd user and a role on its prefix, and `tenants:` routing that keeps each
// tenant's keys in a database of its own (SQLite for one, PostgreSQL for the other) with a
// rule on the key anatomy within a tenant (tenant-a's events go to the main database).
// Driven with etcdctl; the rows are then looked up in each database directly.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { makeCa, makeCert, type Pem, read } from "../support/certs.ts";
import { freshDatabase, startStrata, type StrataProcess } from "../support/strata.ts";
import { keysInSqlite } from "../support/stored-keys.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-tenant-dbs-"));
let ca: Pem;
const certs: Record<string, Pem> = {};
const urls: Record<string, string> = {};
let strata: StrataProcess;

const A = "/tenant-a/registry/", B = "/tenant-b/registry/";
const KEYS = {
  a: [`${A}configmaps/default/app`, `${A}configmaps/kube-system/dns`, `${A}pods/default/web-0`],
  aEvents: [`${A}events/default/web-0.1`],
  b: [`${B}configmaps/default/app`, `${B}secrets/default/token`],
  main: ["/registry/namespaces/default"],
};

beforeAll(async () => {
  ca = makeCa(dir, "ca");
  const server = makeCert(dir, "server", ca, "server");
  for (const name of ["root", "tenant-a", "tenant-b"]) certs[name] = makeCert(dir, name, ca, "client");
  urls.main = await freshDatabase("sqlite", dir);
  urls.a = await freshDatabase("sqlite", dir);
  urls.b = await freshDatabase("postgres", dir);
  const config = join(dir, "strata.yaml");
  writeFileSync(config, [
    "backends:",
    `  main: ${urls.main}`,
    `  tenant-a: ${urls.a}`,
    `  tenant-b: ${urls.b}`,
    "default: main",
    "tenants:",
    "  - prefix: /tenant-a/registry",
    "    backend: tenant-a",
    "    routes:",
    "      - match: { resource: events }",
    "        backend: main",
    "  - prefix: /tenant-b/registry",
    "    backend: tenant-b",
    "",
  ].join("\n"));
  strata = await startStrata(
    ["--config", config, "--cert-file", server.cert, "--key-file", server.key, "--trusted-ca-file", ca.cert, "--client-cert-auth", "--bcrypt-cost", "4"],
    undefined,
    "bun",
    { ca: read(ca.cert), cert: read(certs.root!.cert), key: read(certs.root!.key) },
  );
}, 60_000);

afterAll(async () => {
  await strata?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

/** etcdctl as the holder of `who`'s certificate; what it printed (stdout and stderr) */
function as(who: string, args: string[], input?: string): string {
  const cert = certs[who]!;
  const r = spawnSync("etcdctl", [
    `--endpoints=https://${strata.endpoint}`, "--cacert", ca.cert, "--cert", cert.cert, "--key", cert.key, "--dial-timeout=5s", "--command-timeout=20s", ...args,
  ], { input, encoding: "utf8", timeout: 30_000 });
  return `${r.stdout}${r.stderr}`;
}

const lines = (out: string) => out.split("\n").filter((l) => l !== "");

function sqliteKeys(url: string): string[] {
  return keysInSqlite(url.slice("sqlite://".length)).sort();
}

async function postgresKeys(url: string): Promise<string[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return (await sql`SELECT k FROM kv`).map((r) => Buffer.from(r.k as Uint8Array).toString()).sort();
  } finally {
    await sql.end();
  }
}

describe("two tenants, each with its certificate, role and database", () => {
  test("set up as docs/auth.md says: users, roles on each prefix, root, auth on", () => {
    const setup = [["user", "add", "root:rootpw"], ["role", "add", "root"], ["user", "grant-role", "root", "root"]];
    for (const t of ["tenant-a", "tenant-b"]) {
      setup.push(["user", "add", t, "--no-password"], ["role", "add", t], ["role", "grant-permission", t, "readwrite", `/${t}/registry/`, "--prefix=true"], ["user", "grant-role", t, t]);
    }
    for (const args of setup) expect(as("root", args)).not.toContain("Error");
    expect(as("root", ["auth", "enable"])).toContain("Authentication Enabled");
  }, 60_000);

  test("each tenant writes its keys; they land in the tenant's database, its events in main", async () => {
    for (const k of [...KEYS.a, ...KEYS.aEvents]) expect(as("tenant-a", ["put", k, "v"])).toBe("OK\n");
    for (const k of KEYS.b) expect(as("tenant-b", ["put", k, "v"])).toBe("OK\n");
    for (const k of KEYS.main) expect(as("root", ["put", k, "v"])).toBe("OK\n");
    expect(sqliteKeys(urls.a!)).toEqual([...KEYS.a].sort());
    expect(await postgresKeys(urls.b!)).toEqual([...KEYS.b].sort());
    expect(sqliteKeys(urls.main!)).toEqual([...KEYS.aEvents, ...KEYS.main].sort());
  }, 60_000);

  test("each tenant lists its own prefix, merged over its databases", () => {
    expect(lines(as("tenant-a", ["get", A, "--prefix", "--keys-only"]))).toEqual([...KEYS.a, ...KEYS.aEvents].sort());
    expect(lines(as("tenant-b", ["get", B, "--prefix", "--keys-only"]))).toEqual([...KEYS.b].sort());
    expect(as("tenant-a", ["get", A, "--prefix", "--limit=1", "-w", "fields"])).toContain(`"Count" : ${KEYS.a.length + KEYS.aEvents.length}`);
  }, 60_000);

  test("the other tenant's keys: list, get, put, delete, watch and a txn compare are permission denied", () => {
    for (const [me, other] of [["tenant-a", B], ["tenant-b", A]] as const) {
      const denied = [
        as(me, ["get", other, "--prefix"]),
        as(me, ["get", `${other}configmaps/default/app`]),
        as(me, ["put", `${other}configmaps/default/app`, "intruder"]),
        as(me, ["del", other, "--prefix"]),
        as(me, ["get", "/", "--prefix", "--keys-only"]),
        as(me, ["watch", other, "--prefix"]),
        // the compare touches the other's key; the ops are the tenant's own
        as(me, ["txn"], `value("${other}configmaps/default/app") = "v"\n\nput /${me}/registry/configmaps/default/x 1\n\n\n`),
      ];
      for (const out of denied) expect(out).toContain("etcdserver: permission denied");
    }
    // nothing changed: the intruders' writes were refused, the txn's put never ran
    expect(as("root", ["get", `${B}configmaps/default/app`, "--print-value-only"])).toBe("v\n");
    expect(as("root", ["get", "/tenant-a/registry/configmaps/default/x"])).toBe("");
  }, 60_000);

  test("kube-apiserver's compaction: its txn on the unprefixed compact_rev_key needs a grant, Compact itself none", () => {
    // what kube-apiserver 1.24 sends every --etcd-compaction-interval (storage/etcd3/compact.go)
    const compactTxn = 'ver("compact_rev_key") = "0"\n\nput compact_rev_key 0\n\nget compact_rev_key\n\n';
    expect(as("tenant-a", ["txn"], compactTxn)).toContain("etcdserver: permission denied");
    expect(as("root", ["role", "grant-permission", "tenant-a", "readwrite", "compact_rev_key"])).toBe("Role tenant-a updated\n");
    expect(as("tenant-a", ["txn"], compactTxn)).toBe("SUCCESS\n\nOK\n");
    const revision = /"Revision" : (\d+)/.exec(as("tenant-a", ["get", A, "--prefix", "--limit=1", "-w", "fields"]))![1];
    expect(as("tenant-a", ["compaction", revision!])).toBe(`compacted revision ${revision}\n`);
    expect(as("tenant-b", ["get", "compact_rev_key"])).toContain("etcdserver: permission denied");
  }, 60_000);

  test("root sees both tenants and its own keys", () => {
    expect(lines(as("root", ["get", "/", "--prefix", "--keys-only"]))).toEqual([...KEYS.a, ...KEYS.aEvents, ...KEYS.b, ...KEYS.main].sort());
    expect(lines(as("root", ["get", "compact_rev_key", "--print-value-only"]))).toEqual(["0"]);
  }, 60_000);

  test("the status page counts each tenant's keys, with the databases its prefix spans", async () => {
    const st = (await (await fetch(`${strata.metrics}/status.json`)).json()) as { keyPrefixes: unknown[] };
    expect(st.keyPrefixes).toEqual([
      { prefix: "/registry/", backends: ["main"], keys: KEYS.main.length },
      { prefix: A, backends: ["main", "tenant-a"], keys: KEYS.a.length + KEYS.aEvents.length },
      { prefix: B, backends: ["tenant-b"], keys: KEYS.b.length },
    ]);
  }, 60_000);
});
