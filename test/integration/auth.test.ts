// etcd's authentication and key permissions, differentially: every scenario runs on a real
// etcd 3.4 and on strata, through etcdctl (what an operator types and reads) and through
// plain gRPC calls carrying a token of the test's choosing, and the answers and errors
// must be the same. Each scenario turns auth on and leaves it off again; both servers
// hash passwords at bcrypt cost 4 (etcd's --bcrypt-cost), so the tests spend no time there.
import { beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  AuthenticateRequestSchema,
  AuthenticateResponseSchema,
  DefragmentRequestSchema,
  DefragmentResponseSchema,
  DeleteRangeRequestSchema,
  DeleteRangeResponseSchema,
  HashKVRequestSchema,
  HashKVResponseSchema,
  LeaseGrantRequestSchema,
  LeaseGrantResponseSchema,
  LeaseRevokeRequestSchema,
  LeaseRevokeResponseSchema,
  MemberListRequestSchema,
  MemberListResponseSchema,
  PutRequestSchema,
  PutResponseSchema,
  RangeRequestSchema,
  RangeResponseSchema,
  TxnRequestSchema,
  TxnResponseSchema,
  WatchRequestSchema,
  WatchResponseSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { differential, prefixEnd, type Side, useServers } from "../support/differential.ts";
import { rawGrpc, type RawGrpc } from "../support/grpc-raw.ts";

const COST = ["--bcrypt-cost", "4"];
const sides = useServers({ etcdArgs: COST, strataArgs: COST });

/** etcdctl against one side: what it printed and how it exited, without its retry log lines and endpoint */
function ctl(side: Side, args: string[], input?: string): string {
  const r = spawnSync("etcdctl", [`--endpoints=${side.endpoint}`, "--dial-timeout=5s", "--command-timeout=20s", ...args], { input, encoding: "utf8" });
  const err = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith('{"level"')).join("\n");
  return `${r.stdout}${err}${err ? "\n" : ""}exit ${r.status}`.replaceAll(side.endpoint, "ENDPOINT");
}

/** Runs `run` on etcd and on strata; the normalised outcomes must be equal. */
async function same(run: (side: Side, raw: RawGrpc) => Promise<unknown>): Promise<unknown> {
  const r = await differential(sides(), async (_c, ctx) => {
    const raw = rawGrpc(ctx.side.endpoint);
    try {
      return await run(ctx.side, raw);
    } finally {
      raw.close();
    }
  });
  if (process.env.AUTH_DEBUG) console.log(JSON.stringify(r, null, 1));
  return r;
}

const enc = (s: string) => new TextEncoder().encode(s);
const ROOT = ["--user", "root:rootpw"];

async function token(raw: RawGrpc, name: string, password: string): Promise<string> {
  const r = await raw.unary("/etcdserverpb.Auth/Authenticate", AuthenticateRequestSchema, AuthenticateResponseSchema, { name, password });
  if ("grpcError" in r) throw new Error(`authenticate ${name}: ${r.grpcError}`);
  return r.token;
}

/** what a call answered, without the parts that differ between servers and calls (tokens) */
const outcome = (r: object) => ("grpcError" in r ? r : { ok: r });

beforeAll(() => {
  // the root user with the root role, on both: auth stays off until a scenario turns it on
  for (const side of sides()) {
    for (const args of [["user", "add", "root:rootpw"], ["role", "add", "root"], ["user", "grant-role", "root", "root"]]) {
      expect(ctl(side, args)).toEndWith("exit 0");
    }
  }
});

describe("the Auth service, through etcdctl", () => {
  test("users, roles and permissions: the same answers and errors as etcd's", async () => {
    await same(async (side) => {
      const out: string[] = [];
      const run = (...args: string[]) => out.push(`$ ${args.join(" ")}\n${ctl(side, args)}`);
      // a user without the root role cannot turn auth on
      run("user", "add", "nonroot:pw");
      run("user", "add", "nonroot:other");
      run("user", "add", "cnonly", "--no-password");
      run("role", "add", "tenant-a");
      run("role", "add", "tenant-a");
      run("role", "grant-permission", "tenant-a", "readwrite", "/a/", "--prefix=true");
      run("role", "grant-permission", "tenant-a", "read", "/shared");
      run("role", "grant-permission", "tenant-a", "write", "/w/", "/w0");
      run("role", "grant-permission", "tenant-a", "read", "/from/", "--from-key=true");
      // granted again with another type: replaced, not added
      run("role", "grant-permission", "tenant-a", "readwrite", "/shared");
      run("role", "grant-permission", "nosuch", "read", "x");
      run("role", "get", "tenant-a");
      run("role", "get", "nosuch");
      run("user", "add", "alice:apw");
      run("user", "grant-role", "alice", "tenant-a");
      run("user", "grant-role", "alice", "tenant-a");
      run("user", "grant-role", "alice", "nosuch");
      run("user", "grant-role", "nobody", "tenant-a");
      run("user", "get", "alice");
      run("user", "get", "nobody");
      run("user", "list");
      run("role", "list");
      run("role", "revoke-permission", "tenant-a", "/nothing");
      run("user", "revoke-role", "alice", "nosuch");
      run("user", "revoke-role", "nobody", "tenant-a");
      run("auth", "enable");
      // auth is on: who may do what
      run("get", "/a/x");
      run("--user", "alice:wrong", "get", "/a/x");
      run("--user", "nobody:pw", "get", "/a/x");
      run("--user", "cnonly:pw", "get", "/a/x");
      run("--user", "alice:apw", "put", "/a/1", "v1");
      run("--user", "alice:apw", "put", "/a/2", "v2");
      run("--user", "alice:apw", "get", "/a/", "--prefix");
      run("--user", "alice:apw", "put", "/b/1", "v");
      run("--user", "alice:apw", "get", "/b/1");
      run("--user", "alice:apw", "get", "/", "--prefix");
      run("--user", "alice:apw", "put", "/shared", "s");
      run("--user", "alice:apw", "get", "/shared");
      run("--user", "alice:apw", "put", "/w/x", "w");
      run("--user", "alice:apw", "get", "/w/x");
      run("--user", "alice:apw", "get", "/from/", "--from-key");
      run("--user", "alice:apw", "get", "/fro", "--from-key");
      run("--user", "alice:apw", "del", "/a/1");
      run("--user", "alice:apw", "del", "/", "--prefix");
      run("--user", "alice:apw", "del", "/a/", "--prefix", "--prev-kv");
      run("--user", "alice:apw", "user", "list");
      run("--user", "alice:apw", "user", "get", "alice");
      run("--user", "alice:apw", "user", "get", "root");
      run("--user", "alice:apw", "role", "get", "tenant-a");
      run("--user", "alice:apw", "role", "get", "root");
      run("--user", "alice:apw", "user", "add", "mallory:pw");
      run("--user", "alice:apw", "auth", "disable");
      run("--user", "root:rootpw", "user", "delete", "root");
      run("--user", "root:rootpw", "role", "delete", "root");
      run("--user", "root:rootpw", "user", "revoke-role", "root", "root");
      run("--user", "root:rootpw", "get", "/", "--prefix");
      run("--user", "root:rootpw", "role", "revoke-permission", "tenant-a", "/w/", "/w0");
      run("--user", "alice:apw", "put", "/w/x", "w");
      run("--user", "root:rootpw", "user", "revoke-role", "alice", "tenant-a");
      run("--user", "alice:apw", "get", "/a/2");
      run("--user", "root:rootpw", "role", "delete", "tenant-a");
      run("--user", "root:rootpw", "user", "delete", "alice");
      run("--user", "alice:apw", "get", "/a/2");
      run("--user", "root:rootpw", "user", "delete", "nonroot");
      run("--user", "root:rootpw", "user", "delete", "cnonly");
      run("--user", "root:rootpw", "del", "/", "--prefix");
      run("--user", "root:rootpw", "auth", "disable");
      run("auth", "disable");
      run("get", "/a/x");
      return out;
    });
  });

  test("a txn is refused when its else branch touches a key the user may not write, before anything runs", async () => {
    await same(async (side) => {
      const out: string[] = [];
      const run = (args: string[], input?: string) => out.push(`$ ${args.join(" ")}\n${ctl(side, args, input)}`);
      run(["role", "add", "txn-role"]);
      run(["role", "grant-permission", "txn-role", "readwrite", "/t/", "--prefix=true"]);
      run(["user", "add", "txn-user:pw"]);
      run(["user", "grant-role", "txn-user", "txn-role"]);
      run(["auth", "enable"]);
      const user = ["--user", "txn-user:pw"];
      // compare, success ops, failure ops, separated by blank lines
      run([...user, "txn"], 'value("/t/k") = "x"\n\nput /t/ok yes\n\nput /other/k no\n\n');
      run([...user, "get", "/t/ok"]);
      run([...user, "txn"], 'value("/t/k") = "x"\n\nput /t/ok yes\n\nput /t/else yes\n\n');
      run([...user, "get", "/t/", "--prefix"]);
      // a compare on a key it may not read
      run([...user, "txn"], 'value("/other/k") = "x"\n\nput /t/ok yes\n\n\n');
      run([...ROOT, "del", "/t/", "--prefix"]);
      run([...ROOT, "auth", "disable"]);
      run(["user", "delete", "txn-user"]);
      run(["role", "delete", "txn-role"]);
      return out;
    });
  });
});

describe("every call, through plain gRPC with the token of the test's choosing", () => {
  test("keys a request touches: ranges, puts with prev_kv, deletes, txn branches and compares, leases; and the admin calls kept for root", async () => {
    await same(async (side, raw) => {
      for (const args of [["role", "add", "g"], ["role", "grant-permission", "g", "readwrite", "/g/", "--prefix=true"],
        ["role", "grant-permission", "g", "write", "/wo/", "--prefix=true"], ["user", "add", "gu:pw"], ["user", "grant-role", "gu", "g"],
        ["auth", "enable"]]) expect(ctl(side, args)).toEndWith("exit 0");
      const t = await token(raw, "gu", "pw");
      const rootToken = await token(raw, "root", "rootpw");
      const put = (key: string, tok = t, more = {}) => raw.unary("/etcdserverpb.KV/Put", PutRequestSchema, PutResponseSchema, { key: enc(key), value: enc("v"), ...more }, tok);
      const get = (key: string, end = "", tok: string | null = t) =>
        raw.unary("/etcdserverpb.KV/Range", RangeRequestSchema, RangeResponseSchema, { key: enc(key), rangeEnd: enc(end) }, tok ?? undefined);
      const out: Record<string, unknown> = {};
      out.put = outcome(await put("/g/1"));
      out.putOther = outcome(await put("/x/1"));
      out.putWriteOnlyPrevKv = outcome(await put("/wo/1", t, { prevKv: true }));
      out.putWriteOnly = outcome(await put("/wo/1"));
      out.getWriteOnly = outcome(await get("/wo/1"));
      out.getRange = outcome(await get("/g/", "/g0"));
      out.getWiderRange = outcome(await get("/g/", "/h"));
      out.getEverything = outcome(await get("\0", "\0"));
      out.noToken = outcome(await get("/g/1", "", null));
      out.badToken = outcome(await get("/g/1", "", "nosuch.1"));
      out.deletePrevKvWriteOnly = outcome(await raw.unary("/etcdserverpb.KV/DeleteRange", DeleteRangeRequestSchema, DeleteRangeResponseSchema,
        { key: enc("/wo/"), rangeEnd: prefixEnd("/wo/"), prevKv: true }, t));
      const txn = (success: unknown[], failure: unknown[] = [], compare: unknown[] = []) =>
        raw.unary("/etcdserverpb.KV/Txn", TxnRequestSchema, TxnResponseSchema, { compare, success, failure } as never, t);
      const putOp = (key: string) => ({ request: { case: "requestPut", value: { key: enc(key), value: enc("t") } } });
      const getOp = (key: string) => ({ request: { case: "requestRange", value: { key: enc(key) } } });
      out.txnAllowed = outcome(await txn([putOp("/g/t1"), getOp("/g/t1")], [getOp("/g/1")]));
      out.txnElseForbidden = outcome(await txn([putOp("/g/t2")], [putOp("/x/t2")]));
      out.txnCompareForbidden = outcome(await txn([putOp("/g/t3")], [], [{ key: enc("/x/1"), target: 3, result: 0, targetUnion: { case: "value", value: enc("") } }]));
      out.afterRefusedTxns = outcome(await get("/g/t", "/g/u"));
      // a lease holding a key the user may not write: revoking it, or attaching it to a key, is refused
      const lease = await raw.unary("/etcdserverpb.Lease/LeaseGrant", LeaseGrantRequestSchema, LeaseGrantResponseSchema, { TTL: 60n }, t);
      if ("grpcError" in lease) throw new Error(lease.grpcError);
      out.rootPutWithLease = outcome(await put("/x/leased", rootToken, { lease: lease.ID }));
      out.putWithThatLease = outcome(await put("/g/leased", t, { lease: lease.ID }));
      out.revoke = outcome(await raw.unary("/etcdserverpb.Lease/LeaseRevoke", LeaseRevokeRequestSchema, LeaseRevokeResponseSchema, { ID: lease.ID }, t));
      out.rootRevoke = outcome(await raw.unary("/etcdserverpb.Lease/LeaseRevoke", LeaseRevokeRequestSchema, LeaseRevokeResponseSchema, { ID: lease.ID }, rootToken));
      // maintenance kept for root
      out.defragUser = outcome(await raw.unary("/etcdserverpb.Maintenance/Defragment", DefragmentRequestSchema, DefragmentResponseSchema, {}, t));
      out.defragNobody = outcome(await raw.unary("/etcdserverpb.Maintenance/Defragment", DefragmentRequestSchema, DefragmentResponseSchema, {}));
      out.defragRoot = "grpcError" in (await raw.unary("/etcdserverpb.Maintenance/Defragment", DefragmentRequestSchema, DefragmentResponseSchema, {}, rootToken));
      out.hashKVUser = outcome(await raw.unary("/etcdserverpb.Maintenance/HashKV", HashKVRequestSchema, HashKVResponseSchema, {}, t));
      out.memberList = "grpcError" in (await raw.unary("/etcdserverpb.Cluster/MemberList", MemberListRequestSchema, MemberListResponseSchema, {}, t));
      expect(ctl(side, [...ROOT, "del", "/", "--prefix"])).toEndWith("exit 0");
      for (const args of [[...ROOT, "auth", "disable"], ["user", "delete", "gu"], ["role", "delete", "g"]]) expect(ctl(side, args)).toEndWith("exit 0");
      return out;
    });
  });

  test("tokens: refused once the user's password changes, the user goes, or auth is turned off", async () => {
    await same(async (side, raw) => {
      for (const args of [["role", "add", "p"], ["role", "grant-permission", "p", "readwrite", "/p/", "--prefix=true"], ["user", "add", "pu:one"],
        ["user", "grant-role", "pu", "p"], ["user", "add", "other:pw"], ["user", "grant-role", "other", "p"], ["auth", "enable"]]) expect(ctl(side, args)).toEndWith("exit 0");
      const get = (tok: string | undefined) => raw.unary("/etcdserverpb.KV/Range", RangeRequestSchema, RangeResponseSchema, { key: enc("/p/k") }, tok).then(outcome);
      const out: Record<string, unknown> = {};
      const first = await token(raw, "pu", "one");
      const others = await token(raw, "other", "pw");
      out.before = await get(first);
      expect(ctl(side, [...ROOT, "user", "passwd", "pu", "--interactive=false"], "two\n")).toEndWith("exit 0");
      out.afterPasswordChange = await get(first);
      out.anotherUsersToken = await get(others);
      out.oldPassword = outcome(await raw.unary("/etcdserverpb.Auth/Authenticate", AuthenticateRequestSchema, AuthenticateResponseSchema, { name: "pu", password: "one" }).then((r) => ("grpcError" in r ? r : { token: "issued" })));
      const second = await token(raw, "pu", "two");
      out.newToken = await get(second);
      expect(ctl(side, [...ROOT, "user", "delete", "pu"])).toEndWith("exit 0");
      out.afterDelete = await get(second);
      expect(ctl(side, [...ROOT, "auth", "disable"])).toEndWith("exit 0");
      out.afterDisable = await get(others);
      out.noTokenAfterDisable = await get(undefined);
      out.authenticateWhileOff = outcome(await raw.unary("/etcdserverpb.Auth/Authenticate", AuthenticateRequestSchema, AuthenticateResponseSchema, { name: "other", password: "pw" }));
      for (const args of [["user", "delete", "other"], ["role", "delete", "p"]]) expect(ctl(side, args)).toEndWith("exit 0");
      return out;
    });
  });

  test("watch: refused at create without read permission; an open watch keeps its events after the role is revoked, as in etcd 3.4", async () => {
    await same(async (side, raw) => {
      for (const args of [["role", "add", "wr"], ["role", "grant-permission", "wr", "readwrite", "/wa/", "--prefix=true"], ["user", "add", "wu:pw"],
        ["user", "grant-role", "wu", "wr"], ["auth", "enable"]]) expect(ctl(side, args)).toEndWith("exit 0");
      const t = await token(raw, "wu", "pw");
      const w = raw.stream("/etcdserverpb.Watch/Watch", WatchRequestSchema, WatchResponseSchema, t);
      const create = (key: string, end: string, watchId: bigint) =>
        w.send({ requestUnion: { case: "createRequest", value: { key: enc(key), rangeEnd: enc(end), watchId } } });
      try {
        create("/wa/", "/wa0", 1n);
        await w.waitFor(1, 10_000);
        create("/wb/", "/wb0", 2n);
        await w.waitFor(2, 10_000);
        expect(ctl(side, ["--user", "wu:pw", "put", "/wa/1", "before"])).toEndWith("exit 0");
        await w.waitFor(3, 10_000);
        expect(ctl(side, [...ROOT, "user", "revoke-role", "wu", "wr"])).toEndWith("exit 0");
        expect(ctl(side, [...ROOT, "put", "/wa/2", "after"])).toEndWith("exit 0");
        await w.waitFor(4, 10_000);
        // a new watcher on the same stream is refused now
        create("/wa/", "/wa0", 3n);
        await w.waitFor(5, 10_000);
      } finally {
        w.end();
      }
      for (const args of [[...ROOT, "del", "/wa/", "--prefix"], [...ROOT, "auth", "disable"], ["user", "delete", "wu"], ["role", "delete", "wr"]]) {
        expect(ctl(side, args)).toEndWith("exit 0");
      }
      return w.received.map((r) => ({ ...r, events: r.events.map((e) => ({ type: e.type, key: e.kv?.key, value: e.kv?.value })) }));
    });
  });
});
