// etcd's auth store as data (auth/store.go): whether auth is on, the auth revision, the
// users and the roles as etcd keeps them (authpb.User and authpb.Role, so snapshots carry
// them as they are), and the changes etcd allows with etcd's rules and errors. Pure: the
// store (auth-store.ts) reads it from the default backend, applies a change and writes it back.
import { clone, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Permission, type Role, RoleSchema, type User, UserSchema } from "../gen/etcd/api/authpb/auth_pb.ts";
import { bytesEqual, compareBytes } from "../mvcc/keyrange.ts";
import { errors } from "../mvcc/errors.ts";
import type { Rev } from "../mvcc/types.ts";
import type { SnapshotAuth } from "../snapshot/index.ts";

export const ROOT = "root";

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);
const byName = (a: string, b: string) => compareBytes(bytes(a), bytes(b));
/** a map's entries in name order */
const inNameOrder = <T>(m: Map<string, T>): Array<[string, T]> => [...m].sort(([a], [b]) => byName(a, b));

export class AuthState {
  constructor(
    public enabled = false,
    /** etcd's auth revision: 1 on a fresh store */
    public revision: Rev = 1n,
    readonly users = new Map<string, User>(),
    readonly roles = new Map<string, Role>(),
  ) {}

  copy(): AuthState {
    const users = new Map([...this.users].map(([n, u]) => [n, clone(UserSchema, u)]));
    const roles = new Map([...this.roles].map(([n, r]) => [n, clone(RoleSchema, r)]));
    return new AuthState(this.enabled, this.revision, users, roles);
  }

  /** user names in etcd's order (its bucket's: bytes) */
  userNames(): string[] {
    return [...this.users.keys()].sort(byName);
  }

  roleNames(): string[] {
    return [...this.roles.keys()].sort(byName);
  }

  isRoot(user: string): boolean {
    return this.users.get(user)?.roles.includes(ROOT) ?? false;
  }

  // ---- etcd's changes: each throws etcd's error or changes the state (and the revision as etcd does)

  enable(): void {
    if (this.enabled) return;
    const root = this.users.get(ROOT);
    if (!root) throw errors.rootUserNotExist();
    if (!root.roles.includes(ROOT)) throw errors.rootRoleNotExist();
    // etcd turns auth on without a new auth revision
    this.enabled = true;
  }

  disable(): void {
    if (!this.enabled) return;
    this.enabled = false;
    this.revision++;
  }

  /** `hashed`: the bcrypt hash of the password (empty for a user without one) */
  userAdd(name: string, hashed: Uint8Array, noPassword: boolean): void {
    if (name === "") throw errors.userEmpty();
    if (this.users.has(name)) throw errors.userAlreadyExist();
    this.users.set(name, create(UserSchema, { name: bytes(name), password: hashed, options: { noPassword } }));
    this.revision++;
  }

  userDelete(name: string): void {
    if (this.enabled && name === ROOT) throw errors.invalidAuthMgmt();
    if (!this.users.delete(name)) throw errors.userNotFound();
    this.revision++;
  }

  userChangePassword(name: string, hashed: Uint8Array): void {
    const user = this.users.get(name);
    if (!user) throw errors.userNotFound();
    user.password = hashed;
    this.revision++;
  }

  userGrantRole(name: string, role: string): void {
    const user = this.users.get(name);
    if (!user) throw errors.userNotFound();
    // the root role may be granted before it is added
    if (role !== ROOT && !this.roles.has(role)) throw errors.roleNotFound();
    if (user.roles.includes(role)) return;
    user.roles = [...user.roles, role].sort();
    this.revision++;
  }

  userRevokeRole(name: string, role: string): void {
    if (this.enabled && name === ROOT && role === ROOT) throw errors.invalidAuthMgmt();
    const user = this.users.get(name);
    if (!user) throw errors.userNotFound();
    if (!user.roles.includes(role)) throw errors.roleNotGranted();
    user.roles = user.roles.filter((r) => r !== role);
    this.revision++;
  }

  roleAdd(name: string): void {
    if (name === "") throw errors.roleEmpty();
    if (this.roles.has(name)) throw errors.roleAlreadyExist();
    this.roles.set(name, create(RoleSchema, { name: bytes(name) }));
    this.revision++;
  }

  roleDelete(name: string): void {
    if (this.enabled && name === ROOT) throw errors.invalidAuthMgmt();
    if (!this.roles.delete(name)) throw errors.roleNotFound();
    for (const user of this.users.values()) user.roles = user.roles.filter((r) => r !== name);
    this.revision++;
  }

  /** a permission on the same key and range_end is replaced; permissions stay sorted by key */
  roleGrantPermission(name: string, perm: Permission): void {
    const role = this.roles.get(name);
    if (!role) throw errors.roleNotFound();
    const same = role.keyPermission.find((p) => bytesEqual(p.key, perm.key) && bytesEqual(p.rangeEnd, perm.rangeEnd));
    if (same) same.permType = perm.permType;
    else {
      role.keyPermission.push(perm);
      role.keyPermission.sort((a, b) => compareBytes(a.key, b.key));
    }
    this.revision++;
  }

  roleRevokePermission(name: string, key: Uint8Array, rangeEnd: Uint8Array): void {
    const role = this.roles.get(name);
    if (!role) throw errors.roleNotFound();
    const kept = role.keyPermission.filter((p) => !bytesEqual(p.key, key) || !bytesEqual(p.rangeEnd, rangeEnd));
    if (kept.length === role.keyPermission.length) throw errors.permissionNotGranted();
    role.keyPermission = kept;
    this.revision++;
  }

  // ---- stored form: JSON with each user and role as etcd's protobuf bytes

  encode(): Uint8Array {
    const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
    return bytes(JSON.stringify({
      enabled: this.enabled,
      revision: String(this.revision),
      users: inNameOrder(this.users).map(([, u]) => b64(toBinary(UserSchema, u))),
      roles: inNameOrder(this.roles).map(([, r]) => b64(toBinary(RoleSchema, r))),
    }));
  }

  /** as etcd's auth buckets hold it */
  toSnapshot(): SnapshotAuth {
    return {
      enabled: this.enabled,
      revision: this.revision,
      users: inNameOrder(this.users).map(([n, u]) => ({ name: bytes(n), value: toBinary(UserSchema, u) })),
      roles: inNameOrder(this.roles).map(([n, r]) => ({ name: bytes(n), value: toBinary(RoleSchema, r) })),
    };
  }

  /** from etcd's auth buckets; throws naming the record that is not etcd's */
  static fromSnapshot(a: SnapshotAuth): AuthState {
    // etcd's revision starts at 1 (a bucket without one is a store never written)
    const state = new AuthState(a.enabled, a.revision > 0n ? a.revision : 1n);
    for (const { name, value } of a.users) {
      let user: User;
      try {
        user = fromBinary(UserSchema, value);
      } catch (err) {
        throw new Error(`user ${JSON.stringify(text(name))}: not an authpb.User (${(err as Error).message})`);
      }
      state.users.set(text(name), user);
    }
    for (const { name, value } of a.roles) {
      let role: Role;
      try {
        role = fromBinary(RoleSchema, value);
      } catch (err) {
        throw new Error(`role ${JSON.stringify(text(name))}: not an authpb.Role (${(err as Error).message})`);
      }
      state.roles.set(text(name), role);
    }
    return state;
  }

  static decode(data: Uint8Array): AuthState {
    const o = JSON.parse(text(data)) as { enabled: boolean; revision: string; users: string[]; roles: string[] };
    const state = new AuthState(o.enabled, BigInt(o.revision));
    for (const u of o.users) {
      const user = fromBinary(UserSchema, Buffer.from(u, "base64"));
      state.users.set(text(user.name), user);
    }
    for (const r of o.roles) {
      const role = fromBinary(RoleSchema, Buffer.from(r, "base64"));
      state.roles.set(text(role.name), role);
    }
    return state;
  }
}
