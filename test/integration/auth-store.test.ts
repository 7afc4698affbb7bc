// Where etcd's users and roles live in strata: the default backend. They survive a
// restart, every strata process on the database sees one process's changes, snapshots
// carry them both ways, and with an upstream etcd as the default backend strata keeps none
// (and says so). Also what etcd 3.4 cannot be compared on: checks strata makes beyond it
// (nested txns, LeaseTimeToLive's keys), RangeStream (etcd 3.7), strata's own tools with
// --user, and JWT tokens, which a real etcd with the same key issues and strata accepts.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AuthenticateRequestSchema,
  AuthenticateResponseSchema,
  AuthStatusRequestSchema,
  AuthStatusResponseSchema,
  AuthUserAddRequestSchema,
  AuthUserAddResponseSchema,
  PutRequestSchema,
  PutResponseSchema,
  RangeRequestSchema,
  RangeResponseSchema,
  RangeStreamResponseSchema,
  LeaseGrantRequestSchema,
  LeaseGrantResponseSchema,
  LeaseTimeToLiveRequestSchema,
  LeaseTimeToLiveResponseSchema,
  TxnRequestSchema,
  TxnResponseSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { strataCli, writeConfig } from "../support/cli.ts";
import { startEtcd } from "../support/etcd.ts";
import { restoreAndStart } from "../support/snapshot.ts";
import { rawGrpc } from "../support/grpc-raw.ts";
import { BACKEND, freshBackendUrl, freshDatabase, startStrata, type StrataProcess } from "../support/strata.ts";

const COST = ["--bcrypt-cost", "4"];
const dir = mkdtempSync(join(tmpdir(), "strata-auth-store-"));
const started: Array<{ stop(): Promise<void> }> = [];
afterAll(async () => {
  await Promise.all(started.map((s) => s.stop()));
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

async function strata(args: string[] = [], url?: string): Promise<StrataProcess> {
  const s = await startStrata([...COST, ...args], url);
  started.push(s);
  return s;
}

function ctl(endpoint: string, ...args: string[]): string {
  const r = spawnSync("etcdctl", [`--endpoints=${endpoint}`, "--dial-timeout=5s", ...args], { encoding: "utf8" });
  const err = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith('{"level"')).join("\n");
  return `${r.stdout}${err}exit ${r.status}`;
}

const enc = (s: string) => new TextEncoder().encode(s);

/** root with the root role, a user with read-write on /app/, auth on */
function setUp(endpoint: string): void {
  for (const args of [["user", "add", "root:rootpw"], ["role", "add", "root"], ["user", "grant-role", "root", "root"],
    ["role", "add", "app"], ["role", "grant-permission", "app", "readwrite", "/app/", "--prefix=true"],
    ["user", "add", "app:apppw"], ["user", "grant-role", "app", "app"], ["auth", "enable"]]) {
    expect(ctl(endpoint, ...args)).toEndWith("exit 0");
  }
}

const databaseBackend = BACKEND !== "etcd";

describe("the auth store lives in the default backend", () => {
  test.if(databaseBackend)("users, roles and auth on survive a restart", async () => {
    const s = await strata();
    setUp(s.endpoint);
    expect(ctl(s.endpoint, "--user", "app:apppw", "put", "/app/k", "v")).toEndWith("exit 0");
    expect(await s.terminate()).toBe(0);
    await s.restart();
    expect(ctl(s.endpoint, "get", "/app/k")).toContain("etcdserver: user name is empty");
    expect(ctl(s.endpoint, "--user", "app:apppw", "get", "/app/k")).toBe("/app/k\nv\nexit 0");
    expect(ctl(s.endpoint, "--user", "app:apppw", "get", "/other")).toContain("etcdserver: permission denied");
    expect(ctl(s.endpoint, "--user", "root:rootpw", "role", "get", "app")).toContain("[/app/, /app0) (prefix /app/)");
  }, 60_000);

  test.if(databaseBackend && BACKEND !== "sqlite")("every strata process on the database follows one process's changes", async () => {
    const one = await strata();
    const two = await strata([], one.backendUrl);
    setUp(one.endpoint);
    const raw = rawGrpc(two.endpoint);
    try {
      const status = () => raw.unary("/etcdserverpb.Auth/AuthStatus", AuthStatusRequestSchema, AuthStatusResponseSchema, {});
      expect(await status()).toMatchObject({ enabled: true });
      // enforcement reads a copy polled about every second: bounded by progress, not by a guess
      const deadline = Date.now() + 10_000;
      while (!ctl(two.endpoint, "get", "/app/k").includes("user name is empty") && Date.now() < deadline) await Bun.sleep(100);
      expect(ctl(two.endpoint, "get", "/app/k")).toContain("etcdserver: user name is empty");
      expect(ctl(two.endpoint, "--user", "app:apppw", "put", "/app/k", "from two")).toEndWith("exit 0");
      // a change in one process: the other's tokens and checks follow
      const t = await raw.unary("/etcdserverpb.Auth/Authenticate", AuthenticateRequestSchema, AuthenticateResponseSchema, { name: "app", password: "apppw" });
      if ("grpcError" in t) throw new Error(t.grpcError);
      const get = () => raw.unary("/etcdserverpb.KV/Range", RangeRequestSchema, RangeResponseSchema, { key: enc("/app/k") }, t.token);
      expect(await get()).toMatchObject({ count: 1n });
      expect(ctl(one.endpoint, "--user", "root:rootpw", "user", "revoke-role", "app", "app")).toEndWith("exit 0");
      let refused: unknown;
      const end = Date.now() + 10_000;
      while (Date.now() < end) {
        refused = await get();
        // a read during which the store changed is answered "revision of auth store is old",
        // as etcd answers it: the client tries again
        const error = (refused as { grpcError?: string }).grpcError;
        if (error && !error.includes("revision of auth store is old")) break;
        await Bun.sleep(100);
      }
      expect(refused).toEqual({ grpcError: "PermissionDenied: etcdserver: permission denied" });
      expect(ctl(one.endpoint, "--user", "root:rootpw", "user", "passwd", "app", "--interactive=false")).toEndWith("exit 0");
    } finally {
      raw.close();
    }
  }, 60_000);

  test.if(BACKEND === "sqlite")("a migration to another default backend takes the users and roles along", async () => {
    const a = await freshDatabase("sqlite", dir), b = await freshDatabase("sqlite", dir);
    const before = writeConfig(dir, "before.yaml", ["backends:", `  a: ${a}`, `  b: ${b}`, "default: a"]);
    const after = writeConfig(dir, "after.yaml", ["backends:", `  a: ${a}`, `  b: ${b}`, "default: b"]);
    const s = await strata(["--config", before]);
    setUp(s.endpoint);
    expect(ctl(s.endpoint, "--user", "app:apppw", "put", "/app/k", "v")).toEndWith("exit 0");
    await s.stop();
    const moved = await strataCli("migrate", "--from-config", before, "--to-config", after);
    expect(moved.stderr).toContain("users and roles copied to the new default backend");
    expect(moved.status).toBe(0);
    const t = await strata(["--config", after]);
    expect(ctl(t.endpoint, "get", "/app/k")).toContain("etcdserver: user name is empty");
    expect(ctl(t.endpoint, "--user", "app:apppw", "get", "/app/k")).toBe("/app/k\nv\nexit 0");
  }, 60_000);

  test.if(BACKEND === "etcd")("with an upstream etcd as the default backend strata keeps no users, and says so", async () => {
    const s = await strata();
    const raw = rawGrpc(s.endpoint);
    try {
      expect(await raw.unary("/etcdserverpb.Auth/AuthStatus", AuthStatusRequestSchema, AuthStatusResponseSchema, {})).toMatchObject({ enabled: false });
      const add = await raw.unary("/etcdserverpb.Auth/UserAdd", AuthUserAddRequestSchema, AuthUserAddResponseSchema, { name: "root", password: "x" });
      expect((add as { grpcError: string }).grpcError).toMatch(/^FailedPrecondition: strata: the default backend .* is an upstream etcd/);
      // the keys are still served
      expect(ctl(s.endpoint, "put", "/k", "v")).toEndWith("exit 0");
    } finally {
      raw.close();
    }
  }, 60_000);
});

describe("the command-line tools against a strata with auth on (etcdctl's --user)", () => {
  test.if(databaseBackend)("import --from reads as the user it names; migrate --endpoint is root's", async () => {
    const s = await strata();
    expect(ctl(s.endpoint, "put", "/app/1", "a")).toEndWith("exit 0");
    setUp(s.endpoint);
    const from = `http://${s.endpoint}`;
    const target = () => freshBackendUrl(mkdtempSync(join(dir, "cli-")));
    const anonymous = await strataCli("import", "--from", from, "--backend", await target());
    expect(anonymous.stderr).toContain("etcdserver: user name is empty");
    expect(anonymous.status).toBe(1);
    const app = await strataCli("import", "--from", from, "--user", "app:apppw", "--backend", await target());
    expect(app.stderr).toContain("etcdserver: permission denied");
    const root = await strataCli("import", "--from", from, "--user", "root:rootpw", "--backend", await target());
    expect(root.stderr).toContain("done: 1 keys");
    expect(root.status).toBe(0);
    const rules = join(dir, "rules.yaml");
    writeFileSync(rules, `backends:\n  default: ${s.backendUrl}\ndefault: default\n`);
    const migrate = await strataCli("migrate", "--to-config", rules, "--endpoint", from, "--user", "app:apppw");
    expect(migrate.stderr).toContain("etcdserver: permission denied");
    expect(migrate.status).not.toBe(0);
    const wrong = await strataCli("migrate", "--to-config", rules, "--endpoint", from, "--user", "root:nope");
    expect(wrong.stderr).toContain("etcdserver: authentication failed, invalid user ID or password");
  }, 60_000);
});

describe("snapshots carry etcd's auth buckets", () => {
  test.if(databaseBackend)("strata's snapshot restored into etcd, and etcd's imported into strata: the same users, roles and auth on", async () => {
    const s = await strata();
    setUp(s.endpoint);
    expect(ctl(s.endpoint, "--user", "app:apppw", "put", "/app/k", "v")).toEndWith("exit 0");
    const fromStrata = join(dir, "from-strata.db"), fromEtcd = join(dir, "from-etcd.db");
    // a snapshot is root's to take
    expect(ctl(s.endpoint, "--user", "app:apppw", "snapshot", "save", fromStrata)).toContain("permission denied");
    expect(ctl(s.endpoint, "--user", "root:rootpw", "snapshot", "save", fromStrata)).toEndWith("exit 0");
    const etcd = await restoreAndStart(fromStrata);
    started.push(etcd);
    const check = (endpoint: string) => [
      ctl(endpoint, "get", "/app/k"),
      ctl(endpoint, "--user", "app:apppw", "get", "/app/k"),
      ctl(endpoint, "--user", "app:wrong", "get", "/app/k"),
      ctl(endpoint, "--user", "app:apppw", "get", "/other"),
      ctl(endpoint, "--user", "root:rootpw", "role", "get", "app"),
      ctl(endpoint, "--user", "root:rootpw", "user", "list"),
    ];
    const want = [
      "Error: etcdserver: user name is emptyexit 1",
      "/app/k\nv\nexit 0",
      "Error: etcdserver: authentication failed, invalid user ID or passwordexit 2",
      "Error: etcdserver: permission deniedexit 1",
      "Role app\nKV Read:\n\t[/app/, /app0) (prefix /app/)\nKV Write:\n\t[/app/, /app0) (prefix /app/)\nexit 0",
      "app\nroot\nexit 0",
    ];
    expect(check(etcd.endpoint)).toEqual(want);
    // back: etcd's snapshot (its own bbolt file) into a fresh database, served by strata
    expect(ctl(etcd.endpoint, "--user", "root:rootpw", "snapshot", "save", fromEtcd)).toEndWith("exit 0");
    const target = await freshBackendUrl(mkdtempSync(join(dir, "import-")));
    const imported = await strataCli("import", "--from-snapshot", fromEtcd, "--backend", target);
    expect(imported.stderr).toContain("2 users and 2 roles, authentication on imported");
    expect(imported.status).toBe(0);
    // a second run finds them there
    expect((await strataCli("import", "--from-snapshot", fromEtcd, "--backend", target)).stderr).toContain("already imported");
    const copy = await strata([], target);
    expect(check(copy.endpoint)).toEqual(want);
  }, 120_000);
});

describe("beyond etcd 3.4", () => {
  test.if(databaseBackend)("a nested txn's operations are checked as well (etcd 3.4 let them through)", async () => {
    const s = await strata();
    setUp(s.endpoint);
    const raw = rawGrpc(s.endpoint);
    try {
      const t = await raw.unary("/etcdserverpb.Auth/Authenticate", AuthenticateRequestSchema, AuthenticateResponseSchema, { name: "app", password: "apppw" });
      if ("grpcError" in t) throw new Error(t.grpcError);
      const put = (key: string) => ({ request: { case: "requestPut", value: { key: enc(key), value: enc("x") } } });
      const nested = (inner: unknown) => ({ request: { case: "requestTxn", value: { success: [inner] } } });
      const txn = (ops: unknown[]) => raw.unary("/etcdserverpb.KV/Txn", TxnRequestSchema, TxnResponseSchema, { success: ops } as never, t.token);
      expect(await txn([put("/app/a"), nested(put("/other/b"))])).toEqual({ grpcError: "PermissionDenied: etcdserver: permission denied" });
      expect(await txn([put("/app/a"), nested(put("/app/b"))])).toMatchObject({ succeeded: true });
      expect(ctl(s.endpoint, "--user", "root:rootpw", "get", "/other/b")).toBe("exit 0");
    } finally {
      raw.close();
    }
  }, 60_000);

  test.if(databaseBackend)("LeaseTimeToLive needs read on the lease's keys (etcd 3.4.26 and 3.5.9 on)", async () => {
    const s = await strata();
    setUp(s.endpoint);
    const raw = rawGrpc(s.endpoint);
    try {
      const token = async (name: string, password: string) => {
        const t = await raw.unary("/etcdserverpb.Auth/Authenticate", AuthenticateRequestSchema, AuthenticateResponseSchema, { name, password });
        if ("grpcError" in t) throw new Error(t.grpcError);
        return t.token;
      };
      const app = await token("app", "apppw"), root = await token("root", "rootpw");
      const lease = await raw.unary("/etcdserverpb.Lease/LeaseGrant", LeaseGrantRequestSchema, LeaseGrantResponseSchema, { TTL: 60n }, app);
      if ("grpcError" in lease) throw new Error(lease.grpcError);
      const ttl = (tok: string) =>
        raw.unary("/etcdserverpb.Lease/LeaseTimeToLive", LeaseTimeToLiveRequestSchema, LeaseTimeToLiveResponseSchema, { ID: lease.ID, keys: true }, tok)
          .then((r) => ("grpcError" in r ? r : r.keys.map((k) => new TextDecoder().decode(k))));
      await raw.unary("/etcdserverpb.KV/Put", PutRequestSchema, PutResponseSchema, { key: enc("/app/l"), value: enc("v"), lease: lease.ID }, app);
      expect(await ttl(app)).toEqual(["/app/l"]);
      await raw.unary("/etcdserverpb.KV/Put", PutRequestSchema, PutResponseSchema, { key: enc("/other/l"), value: enc("v"), lease: lease.ID }, root);
      expect(await ttl(app)).toEqual({ grpcError: "PermissionDenied: etcdserver: permission denied" });
      expect(await ttl(root)).toEqual(["/app/l", "/other/l"]);
    } finally {
      raw.close();
    }
  }, 60_000);
});

describe("password checks are off the event loop", () => {
  test.if(BACKEND === "sqlite")("a burst of Authenticate calls at etcd's cost: another client's reads are answered meanwhile; beyond the queue, too many requests", async () => {
    // etcd's bcrypt cost 10: each check is tens of milliseconds of CPU
    const s = await startStrata([]);
    started.push(s);
    for (const args of [["user", "add", "root:pw"], ["role", "add", "root"], ["user", "grant-role", "root", "root"], ["auth", "enable"]]) {
      expect(ctl(s.endpoint, ...args)).toEndWith("exit 0");
    }
    const raw = rawGrpc(s.endpoint);
    try {
      const authenticate = () => raw.unary("/etcdserverpb.Auth/Authenticate", AuthenticateRequestSchema, AuthenticateResponseSchema, { name: "root", password: "pw" });
      const t = await authenticate();
      if ("grpcError" in t) throw new Error(t.grpcError);
      let granted = 0;
      const refusals: string[] = [];
      const burst = Array.from({ length: 100 }, () => authenticate().then((r) => ("grpcError" in r ? refusals.push(r.grpcError) : granted++)));
      for (let i = 0; i < 20; i++) {
        expect(await raw.unary("/etcdserverpb.KV/Range", RangeRequestSchema, RangeResponseSchema, { key: enc("k") }, t.token)).toMatchObject({ count: 0n });
      }
      // the reads did not wait for the checks (on the event loop, all 100 were done first)
      const grantedWhenReadsEnded = granted;
      await Promise.all(burst);
      expect(grantedWhenReadsEnded).toBeLessThan(granted);
      expect(granted).toBeGreaterThan(0);
      expect(refusals.length + granted).toBe(100);
      expect([...new Set(refusals)]).toEqual(refusals.length > 0 ? ["ResourceExhausted: etcdserver: too many requests"] : []);
    } finally {
      raw.close();
    }
  }, 120_000);
});

describe("RangeStream (etcd 3.7)", () => {
  test.if(databaseBackend)("checked as a Range is: the user's own prefix streams, another is refused before a chunk", async () => {
    const s = await strata();
    expect(ctl(s.endpoint, "put", "/app/1", "a")).toEndWith("exit 0");
    expect(ctl(s.endpoint, "put", "/other/1", "o")).toEndWith("exit 0");
    setUp(s.endpoint);
    const raw = rawGrpc(s.endpoint);
    try {
      const t = await raw.unary("/etcdserverpb.Auth/Authenticate", AuthenticateRequestSchema, AuthenticateResponseSchema, { name: "app", password: "apppw" });
      if ("grpcError" in t) throw new Error(t.grpcError);
      const stream = async (prefix: string, token?: string) => {
        const call = raw.stream("/etcdserverpb.KV/RangeStream", RangeRequestSchema, RangeStreamResponseSchema, token);
        call.send({ key: enc(prefix), rangeEnd: enc(`${prefix.slice(0, -1)}0`) });
        call.halfClose();
        const status = await call.status;
        return { status, keys: call.received.flatMap((c) => c.rangeResponse?.kvs.map((kv) => new TextDecoder().decode(kv.key)) ?? []) };
      };
      expect(await stream("/app/", t.token)).toEqual({ status: "OK", keys: ["/app/1"] });
      expect(await stream("/other/", t.token)).toEqual({ status: "PermissionDenied: etcdserver: permission denied", keys: [] });
      expect(await stream("/app/")).toEqual({ status: "InvalidArgument: etcdserver: user name is empty", keys: [] });
    } finally {
      raw.close();
    }
  }, 60_000);
});

describe("JWT tokens (--auth-token jwt,…)", () => {
  test.if(databaseBackend)("a token etcd signs with the same key is accepted; one from before a change is old, as etcd says", async () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const priv = join(dir, "jwt.key"), pub = join(dir, "jwt.pub");
    writeFileSync(priv, rsa.privateKey.export({ type: "pkcs8", format: "pem" }));
    writeFileSync(pub, rsa.publicKey.export({ type: "spki", format: "pem" }));
    const spec = `jwt,pub-key=${pub},priv-key=${priv},sign-method=RS256,ttl=10m`;
    const [etcd, s] = await Promise.all([startEtcd([...COST, "--auth-token", spec]), strata(["--auth-token", spec])]);
    started.push(etcd);
    const out: Record<string, unknown[]> = {};
    const tokens: Record<string, string> = {};
    for (const [name, endpoint] of [["etcd", etcd.endpoint], ["strata", s.endpoint]] as const) {
      setUp(endpoint);
      const raw = rawGrpc(endpoint);
      try {
        const t = await raw.unary("/etcdserverpb.Auth/Authenticate", AuthenticateRequestSchema, AuthenticateResponseSchema, { name: "app", password: "apppw" });
        if ("grpcError" in t) throw new Error(t.grpcError);
        tokens[name] = t.token;
        const put = (tok: string) => raw.unary("/etcdserverpb.KV/Put", PutRequestSchema, PutResponseSchema, { key: enc("/app/j"), value: enc("v") }, tok)
          .then((r) => ("grpcError" in r ? r : "ok"));
        const seen: unknown[] = [await put(t.token), await put("not.a.jwt")];
        expect(ctl(endpoint, "--user", "root:rootpw", "role", "add", "another")).toEndWith("exit 0");
        seen.push(await put(t.token));
        out[name] = seen;
      } finally {
        raw.close();
      }
    }
    expect(out.strata).toEqual(out.etcd!);
    expect(out.strata).toEqual(["ok", { grpcError: "Unauthenticated: etcdserver: invalid auth token" }, { grpcError: "InvalidArgument: etcdserver: revision of auth store is old" }]);
    // the same claims and signature scheme: a token one server signs passes the other's check
    // (both made the same changes, so their auth revisions are equal)
    const fresh = async (endpoint: string) => {
      const raw = rawGrpc(endpoint);
      try {
        const t = await raw.unary("/etcdserverpb.Auth/Authenticate", AuthenticateRequestSchema, AuthenticateResponseSchema, { name: "app", password: "apppw" });
        if ("grpcError" in t) throw new Error(t.grpcError);
        return t.token;
      } finally {
        raw.close();
      }
    };
    const read = async (endpoint: string, token: string) => {
      const raw = rawGrpc(endpoint);
      try {
        const r = await raw.unary("/etcdserverpb.KV/Range", RangeRequestSchema, RangeResponseSchema, { key: enc("/app/j") }, token);
        return "grpcError" in r ? r : { count: r.count };
      } finally {
        raw.close();
      }
    };
    const byEtcd = await fresh(etcd.endpoint), byStrata = await fresh(s.endpoint);
    expect(JSON.parse(Buffer.from(byEtcd.split(".")[0]!, "base64url").toString())).toEqual({ alg: "RS256", typ: "JWT" });
    expect(await read(s.endpoint, byEtcd)).toEqual({ count: 1n });
    expect(await read(etcd.endpoint, byStrata)).toEqual({ count: 1n });
    // a signature that is not the key's is refused
    const tampered = `${byEtcd.slice(0, -4)}${byEtcd.endsWith("AAAA") ? "BBBB" : "AAAA"}`;
    expect(await read(s.endpoint, tampered)).toEqual({ grpcError: "Unauthenticated: etcdserver: invalid auth token" });
  }, 90_000);
});
