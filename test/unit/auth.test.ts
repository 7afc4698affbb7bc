// etcd's auth rules as pure logic: merged permissions and etcd's interval checks, the
// store's changes with etcd's errors and revisions, and the tokens' lifetimes.
import { describe, expect, test } from "bun:test";
import { createSecretKey, generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Permission_Type, PermissionSchema, RoleSchema } from "../../src/gen/etcd/api/authpb/auth_pb.ts";
import { AuthState } from "../../src/api/auth-state.ts";
import { JwtTokens, SimpleTokens, tokenProvider } from "../../src/api/auth-tokens.ts";
import { mergePermissions, permits } from "../../src/api/permissions.ts";
import { ConfigError } from "../../src/util/config-error.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const perm = (type: Permission_Type, key: string, end = "") => create(PermissionSchema, { permType: type, key: enc(key), rangeEnd: enc(end) });
const role = (...perms: ReturnType<typeof perm>[]) => create(RoleSchema, { name: enc("r"), keyPermission: perms });
const failure = (fn: () => unknown) => {
  try {
    fn();
    return "no error";
  } catch (err) {
    return (err as Error).message;
  }
};

describe("permissions (etcd's range_perm_cache)", () => {
  const p = mergePermissions([
    role(perm(Permission_Type.READWRITE, "/a/", "/a0"), perm(Permission_Type.READ, "/key")),
    role(perm(Permission_Type.WRITE, "/w/", "/w0"), perm(Permission_Type.READ, "/m/", "/n/"), perm(Permission_Type.READ, "/n/", "/o/")),
    role(perm(Permission_Type.READ, "/z", "\0")),
  ]);
  test("one key: permitted when some permission holds it", () => {
    expect(permits(p.read, enc("/a/x"), enc(""))).toBe(true);
    expect(permits(p.write, enc("/a/x"), enc(""))).toBe(true);
    expect(permits(p.read, enc("/key"), enc(""))).toBe(true);
    expect(permits(p.read, enc("/key2"), enc(""))).toBe(false);
    expect(permits(p.write, enc("/key"), enc(""))).toBe(false);
    expect(permits(p.read, enc("/w/x"), enc(""))).toBe(false);
    expect(permits(p.read, enc("/a0"), enc(""))).toBe(false);
    expect(permits(p.read, enc("/zzz"), enc(""))).toBe(true);
  });
  test("a range: covered whole by the permissions it overlaps, joined without a gap", () => {
    expect(permits(p.read, enc("/a/"), enc("/a0"))).toBe(true);
    expect(permits(p.read, enc("/a/b"), enc("/a/c"))).toBe(true);
    expect(permits(p.read, enc("/a/"), enc("/a1"))).toBe(false);
    expect(permits(p.read, enc("/"), enc("/a0"))).toBe(false);
    // two adjacent permissions cover their union
    expect(permits(p.read, enc("/m/"), enc("/o/"))).toBe(true);
    expect(permits(p.read, enc("/m/"), enc("/o/x"))).toBe(false);
    // "\0" is every key from the start on, on either side
    expect(permits(p.read, enc("/z"), enc("\0"))).toBe(true);
    expect(permits(p.read, enc("/zz"), enc("\0"))).toBe(true);
    expect(permits(p.read, enc("/y"), enc("\0"))).toBe(false);
    expect(permits(p.read, enc("/a/"), enc("\0"))).toBe(false);
    expect(permits(p.write, enc("/w/"), enc("/w0"))).toBe(true);
  });
  test("no roles, no permission", () => {
    const none = mergePermissions([]);
    expect(permits(none.read, enc("/a"), enc(""))).toBe(false);
    expect(permits(none.read, enc("/a"), enc("\0"))).toBe(false);
  });
});

describe("the auth store's rules (etcd's auth/store.go)", () => {
  const hash = enc("$2b$04$hash");
  test("auth is turned on only with a root user holding the root role; turning it on takes no revision", () => {
    const s = new AuthState();
    expect(s.revision).toBe(1n);
    expect(failure(() => s.enable())).toBe("etcdserver: root user does not exist");
    s.userAdd("root", hash, false);
    expect(failure(() => s.enable())).toBe("etcdserver: root user does not have root role");
    // the root role may be granted before it exists
    s.userGrantRole("root", "root");
    expect(s.revision).toBe(3n);
    s.enable();
    expect(s.enabled).toBe(true);
    expect(s.revision).toBe(3n);
    expect(failure(() => s.userDelete("root"))).toBe("etcdserver: invalid auth management");
    expect(failure(() => s.userRevokeRole("root", "root"))).toBe("etcdserver: invalid auth management");
    expect(failure(() => s.roleDelete("root"))).toBe("etcdserver: invalid auth management");
    s.disable();
    expect(s.revision).toBe(4n);
    s.userRevokeRole("root", "root");
    expect(s.isRoot("root")).toBe(false);
  });
  test("users and roles: etcd's errors, sorted names, a granted role counted once, permissions replaced by key and range", () => {
    const s = new AuthState();
    expect(failure(() => s.userAdd("", hash, false))).toBe("etcdserver: user name is empty");
    s.userAdd("b", hash, false);
    s.userAdd("a", new Uint8Array(0), true);
    expect(failure(() => s.userAdd("a", hash, false))).toBe("etcdserver: user name already exists");
    expect(s.userNames()).toEqual(["a", "b"]);
    expect(failure(() => s.roleAdd(""))).toBe("etcdserver: role name is empty");
    s.roleAdd("r2");
    s.roleAdd("r1");
    expect(failure(() => s.roleAdd("r1"))).toBe("etcdserver: role name already exists");
    expect(s.roleNames()).toEqual(["r1", "r2"]);
    expect(failure(() => s.userGrantRole("x", "r1"))).toBe("etcdserver: user name not found");
    expect(failure(() => s.userGrantRole("a", "nope"))).toBe("etcdserver: role name not found");
    s.userGrantRole("a", "r2");
    s.userGrantRole("a", "r1");
    const before = s.revision;
    s.userGrantRole("a", "r1");
    expect(s.revision).toBe(before);
    expect(s.users.get("a")!.roles).toEqual(["r1", "r2"]);
    expect(failure(() => s.userRevokeRole("b", "r1"))).toBe("etcdserver: role is not granted to the user");
    s.roleGrantPermission("r1", perm(Permission_Type.READ, "/b/", "/b0"));
    s.roleGrantPermission("r1", perm(Permission_Type.READ, "/a/", "/a0"));
    s.roleGrantPermission("r1", perm(Permission_Type.READWRITE, "/b/", "/b0"));
    expect(s.roles.get("r1")!.keyPermission.map((p) => [new TextDecoder().decode(p.key), p.permType])).toEqual([["/a/", 0], ["/b/", 2]]);
    expect(failure(() => s.roleRevokePermission("r1", enc("/b/"), enc("")))).toBe("etcdserver: permission is not granted to the role");
    s.roleRevokePermission("r1", enc("/b/"), enc("/b0"));
    s.roleDelete("r1");
    expect(s.users.get("a")!.roles).toEqual(["r2"]);
    expect(failure(() => s.roleDelete("r1"))).toBe("etcdserver: role name not found");
    // the stored form reads back the same
    expect(AuthState.decode(s.encode()).encode()).toEqual(s.encode());
    expect(AuthState.decode(s.encode()).users.get("a")!.options?.noPassword).toBe(true);
  });
});

describe("tokens", () => {
  test("a simple token lives its TTL from its last use, and ends with its user's password or with auth", () => {
    let now = 1_000_000;
    const t = new SimpleTokens(300_000, () => now);
    const token = t.assign("alice");
    expect(token).toMatch(/^[A-Za-z]{16}\.1$/);
    expect(t.info(token, 7n)).toEqual({ user: "alice", revision: 7n });
    now += 299_000;
    expect(t.info(token, 7n)?.user).toBe("alice");
    now += 299_000;
    expect(t.info(token, 7n)?.user).toBe("alice");
    now += 300_001;
    expect(t.info(token, 7n)).toBeUndefined();
    const again = t.assign("alice"), other = t.assign("bob");
    t.invalidateUser("alice");
    expect(t.info(again, 7n)).toBeUndefined();
    expect(t.info(other, 7n)?.user).toBe("bob");
    t.disable();
    expect(t.info(other, 7n)).toBeUndefined();
  });

  test("JWT: signed and verified with the key (ES256, HS256), carrying user and revision, until exp", () => {
    const dir = mkdtempSync(join(tmpdir(), "strata-jwt-"));
    try {
      const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
      writeFileSync(join(dir, "ec.key"), ec.privateKey.export({ type: "pkcs8", format: "pem" }));
      writeFileSync(join(dir, "ec.pub"), ec.publicKey.export({ type: "spki", format: "pem" }));
      writeFileSync(join(dir, "secret"), "a shared secret");
      const es = tokenProvider(`jwt,priv-key=${join(dir, "ec.key")},sign-method=ES256,ttl=1m`, 300);
      const token = es.assign("alice", 5n);
      expect(es.info(token, 9n)).toEqual({ user: "alice", revision: 5n });
      // verify-only: the public key accepts it and cannot sign
      const verifier = tokenProvider(`jwt,pub-key=${join(dir, "ec.pub")},sign-method=ES256`, 300);
      expect(verifier.info(token, 9n)).toEqual({ user: "alice", revision: 5n });
      expect(failure(() => verifier.assign("alice", 5n))).toBe("auth: token signing attempted with verify-only key");
      const hs = tokenProvider(`jwt,priv-key=${join(dir, "secret")},sign-method=HS256`, 300);
      expect(hs.info(token, 9n)).toBeUndefined();
      expect(hs.info(hs.assign("bob", 2n), 9n)).toEqual({ user: "bob", revision: 2n });
      // valid until exp, refused after
      let now = Date.now();
      const secret = createSecretKey(Buffer.from("s"));
      const clocked = new JwtTokens("HS256", secret, secret, 60_000, () => now);
      const expiring = clocked.assign("carol", 3n);
      now += 59_000;
      expect(clocked.info(expiring)?.user).toBe("carol");
      now += 2_000;
      expect(clocked.info(expiring)).toBeUndefined();
      expect(failure(() => tokenProvider("jwt,sign-method=RS999", 300))).toContain("sign-method must be one of");
      expect(failure(() => tokenProvider("jwt,sign-method=ES256", 300))).toContain("needs priv-key or pub-key");
      expect(failure(() => tokenProvider(`jwt,priv-key=${join(dir, "ec.key")},sign-method=RS256`, 300))).toContain("needs an RSA key");
      expect(failure(() => tokenProvider("jwt,ttl", 300))).toContain("invalid option");
      expect(failure(() => tokenProvider("magic", 300))).toContain('unknown token type "magic"');
      expect(() => tokenProvider("jwt,sign-method=ES256", 300)).toThrow(ConfigError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
