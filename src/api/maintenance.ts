// etcdserverpb.Maintenance: what etcdctl's endpoint status/health/hashkv, defrag, snapshot
// save and alarm commands call, answered by the keyspace. Alarms are strata's own (NOSPACE,
// mvcc/alarms.ts) and any upstream etcd's. Over a single upstream etcd, Status, Hash and
// HashKV are etcd's.
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { AlarmRequest_AlarmAction, AlarmType, Maintenance } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Keyspace } from "../keyspace/contract.ts";
import { EtcdError, errors } from "../mvcc/errors.ts";
import type { AuthStore } from "./auth-store.ts";
import { caller } from "./caller.ts";
import { etcdErrors, toConnectError } from "./errors.ts";
import { header, RAFT_TERM, type ServerIdentity } from "./header.ts";
import { snapshotStream } from "./snapshot.ts";

/** etcd's gRPC words for its auth store's errors, and the auth store's own */
const AUTH_STORE_WORDS: Record<string, string> = {
  [errors.userEmpty().message]: "auth: user name is empty",
  [errors.userNotFound().message]: "auth: user not found",
  [errors.permissionDenied().message]: "auth: permission denied",
  [errors.invalidAuthToken().message]: "auth: invalid auth token",
};

/** the etcd API version strata implements, reported by Status */
export const ETCD_API_VERSION = "3.5.17";

export function maintenanceService(keyspace: Keyspace, id: ServerIdentity, auth: AuthStore): ServiceImpl<typeof Maintenance> {
  /**
   * etcd keeps defragmentation, hashes and snapshots for users of the root role, and
   * refuses with its auth store's own error, unnamed for gRPC: Unknown, "auth: …"
   */
  const admin = (ctx: Pick<HandlerContext, "values">) => {
    try {
      auth.checkAdmin(auth.identify(caller(ctx)));
    } catch (err) {
      throw err instanceof EtcdError ? new EtcdError("Unknown", AUTH_STORE_WORDS[err.message] ?? err.message) : err;
    }
  };
  const snapshot = snapshotStream(keyspace, id, () => auth.forSnapshot());
  const unsupported = (what: string) => async (): Promise<never> => {
    throw new ConnectError(`strata: ${what}`, Code.Unimplemented);
  };
  return {
    status: etcdErrors(async () => {
      const s = await keyspace.status();
      // strata is the member the client talks to
      return { version: ETCD_API_VERSION, raftTerm: RAFT_TERM, ...s, header: header(id, s.header.revision), leader: id.memberId };
    }),
    alarm: etcdErrors(async (r, ctx) => {
      // etcd asks no permission of alarms, only a valid token if one is given
      auth.identify(caller(ctx));
      // etcd exits on an action it does not know (its applier answers nothing, and the
      // server panics) and, 3.4, on activating "no alarm" for member 0: such requests ask
      // for nothing, and are answered here without reaching any keyspace (an upstream etcd)
      if (!(r.action in AlarmRequest_AlarmAction) || (r.action === AlarmRequest_AlarmAction.ACTIVATE && r.alarm === AlarmType.NONE)) {
        return { header: header(id, keyspace.latestRevision), alarms: [] };
      }
      const a = await keyspace.alarm(r);
      return { header: header(id, a.header.revision), alarms: a.alarms };
    }),
    defragment: etcdErrors(async (_r, ctx) => {
      admin(ctx);
      await keyspace.defragment();
      return { header: header(id, keyspace.latestRevision) };
    }),
    hash: etcdErrors(async (_r, ctx) => {
      admin(ctx);
      const h = await keyspace.hash();
      return { header: header(id, h.header.revision), hash: h.hash };
    }),
    hashKV: etcdErrors(async (r, ctx) => {
      admin(ctx);
      const h = await keyspace.hashKV(r);
      return { ...h, header: header(id, h.header.revision) };
    }),
    // etcd's snapshot file of every database backend at one revision (snapshot.ts)
    snapshot: async function* (r, ctx) {
      try {
        admin(ctx);
      } catch (err) {
        throw toConnectError(err);
      }
      yield* snapshot(r, ctx);
    },
    moveLeader: unsupported("strata has no raft leader to move"),
    downgrade: unsupported("cluster downgrade does not apply to strata"),
  };
}
