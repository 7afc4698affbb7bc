// etcdserverpb.Auth: etcd's users, roles and authentication (auth-store.ts keeps them in
// the default backend). Management needs a user of the root role once auth is on, as in
// etcd (apply_auth.go's needAdminPermission); a user may read itself and its roles.
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { PermissionSchema } from "../gen/etcd/api/authpb/auth_pb.ts";
import { Auth } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Keyspace } from "../keyspace/contract.ts";
import { EtcdError, errors } from "../mvcc/errors.ts";
import type { AuthStore } from "./auth-store.ts";
import { caller } from "./caller.ts";
import { etcdErrors } from "./errors.ts";
import { header, type ServerIdentity } from "./header.ts";

type Ctx = Pick<HandlerContext, "values">;

export function authService(keyspace: Keyspace, id: ServerIdentity, auth: AuthStore): ServiceImpl<typeof Auth> {
  // auth changes answer with the key revision, as etcd's do
  const done = () => ({ header: header(id, keyspace.latestRevision) });
  /** the caller, who must hold the root role while auth is on */
  const admin = (ctx: Ctx) => auth.checkAdmin(auth.identify(caller(ctx)));
  return {
    authStatus: etcdErrors(async () => {
      if (!auth.available) return { ...done(), enabled: false, authRevision: 0n };
      const s = await auth.authStatus();
      return { ...done(), enabled: s.enabled, authRevision: s.revision };
    }),
    authEnable: etcdErrors(async (_r, ctx) => {
      admin(ctx);
      await auth.enable();
      return done();
    }),
    authDisable: etcdErrors(async (_r, ctx) => {
      admin(ctx);
      await auth.disable();
      return done();
    }),
    authenticate: etcdErrors(async (r) => {
      if (!auth.available) throw errors.authNotEnabled();
      const token = await auth.authenticate(r.name, r.password);
      return { ...done(), token };
    }),
    userAdd: etcdErrors(async (r, ctx) => {
      admin(ctx);
      await auth.userAdd(r.name, r.password, r.options?.noPassword ?? false);
      return done();
    }),
    userGet: etcdErrors(async (r, ctx) => {
      const ai = auth.identify(caller(ctx));
      // a user may read its own roles
      if (ai?.user !== r.name) auth.checkAdmin(ai);
      return { ...done(), roles: await auth.userGet(r.name) };
    }),
    userList: etcdErrors(async (_r, ctx) => {
      admin(ctx);
      return { ...done(), users: await auth.userList() };
    }),
    userDelete: etcdErrors(async (r, ctx) => {
      admin(ctx);
      await auth.userDelete(r.name);
      return done();
    }),
    userChangePassword: etcdErrors(async (r, ctx) => {
      admin(ctx);
      await auth.userChangePassword(r.name, r.password);
      return done();
    }),
    userGrantRole: etcdErrors(async (r, ctx) => {
      admin(ctx);
      await auth.userGrantRole(r.user, r.role);
      return done();
    }),
    userRevokeRole: etcdErrors(async (r, ctx) => {
      admin(ctx);
      await auth.userRevokeRole(r.name, r.role);
      return done();
    }),
    roleAdd: etcdErrors(async (r, ctx) => {
      admin(ctx);
      await auth.roleAdd(r.name);
      return done();
    }),
    roleGet: etcdErrors(async (r, ctx) => {
      const ai = auth.identify(caller(ctx));
      // a user may read the roles it has
      if (!auth.hasRole(ai, r.role)) auth.checkAdmin(ai);
      return { ...done(), perm: await auth.roleGet(r.role) };
    }),
    roleList: etcdErrors(async (_r, ctx) => {
      admin(ctx);
      return { ...done(), roles: await auth.roleList() };
    }),
    roleDelete: etcdErrors(async (r, ctx) => {
      admin(ctx);
      await auth.roleDelete(r.role);
      return done();
    }),
    roleGrantPermission: etcdErrors(async (r, ctx) => {
      admin(ctx);
      const p = r.perm;
      // etcd 3.4 crashed on a request without one; 3.5 answers this
      if (!p) throw new EtcdError("InvalidArgument", "etcdserver: permission not given");
      await auth.roleGrantPermission(r.name, create(PermissionSchema, { permType: p.permType, key: p.key, rangeEnd: p.rangeEnd }));
      return done();
    }),
    roleRevokePermission: etcdErrors(async (r, ctx) => {
      admin(ctx);
      await auth.roleRevokePermission(r.role, r.key, r.rangeEnd);
      return done();
    }),
  };
}
