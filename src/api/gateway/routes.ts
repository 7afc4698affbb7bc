// etcd's JSON gateway paths (the google.api.http annotations of etcd's rpc.proto: every
// method is a POST with the whole request as its body), by path under /v3/.
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Auth, Cluster, KV, Lease, Maintenance, Watch } from "../../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { Election } from "../../gen/etcd/api/v3electionpb/v3election_pb.ts";
import { Lock } from "../../gen/etcd/api/v3lockpb/v3lock_pb.ts";

const PATHS: Array<[DescService, string, string[]]> = [
  [KV, "Range", ["kv/range"]],
  [KV, "Put", ["kv/put"]],
  [KV, "DeleteRange", ["kv/deleterange"]],
  [KV, "Txn", ["kv/txn"]],
  [KV, "Compact", ["kv/compaction"]],
  [Watch, "Watch", ["watch"]],
  [Lease, "LeaseGrant", ["lease/grant"]],
  // etcd keeps its first paths for the lease methods as second bindings
  [Lease, "LeaseRevoke", ["lease/revoke", "kv/lease/revoke"]],
  [Lease, "LeaseKeepAlive", ["lease/keepalive"]],
  [Lease, "LeaseTimeToLive", ["lease/timetolive", "kv/lease/timetolive"]],
  [Lease, "LeaseLeases", ["lease/leases", "kv/lease/leases"]],
  [Cluster, "MemberAdd", ["cluster/member/add"]],
  [Cluster, "MemberRemove", ["cluster/member/remove"]],
  [Cluster, "MemberUpdate", ["cluster/member/update"]],
  [Cluster, "MemberList", ["cluster/member/list"]],
  [Cluster, "MemberPromote", ["cluster/member/promote"]],
  [Maintenance, "Alarm", ["maintenance/alarm"]],
  [Maintenance, "Status", ["maintenance/status"]],
  [Maintenance, "Defragment", ["maintenance/defragment"]],
  // HashKV is annotated with the same path; etcd's gateway answers it with Hash
  [Maintenance, "Hash", ["maintenance/hash"]],
  [Maintenance, "Snapshot", ["maintenance/snapshot"]],
  [Maintenance, "MoveLeader", ["maintenance/transfer-leadership"]],
  [Maintenance, "Downgrade", ["maintenance/downgrade"]],
  [Auth, "AuthEnable", ["auth/enable"]],
  [Auth, "AuthDisable", ["auth/disable"]],
  [Auth, "AuthStatus", ["auth/status"]],
  [Auth, "Authenticate", ["auth/authenticate"]],
  [Auth, "UserAdd", ["auth/user/add"]],
  [Auth, "UserGet", ["auth/user/get"]],
  [Auth, "UserList", ["auth/user/list"]],
  [Auth, "UserDelete", ["auth/user/delete"]],
  [Auth, "UserChangePassword", ["auth/user/changepw"]],
  [Auth, "UserGrantRole", ["auth/user/grant"]],
  [Auth, "UserRevokeRole", ["auth/user/revoke"]],
  [Auth, "RoleAdd", ["auth/role/add"]],
  [Auth, "RoleGet", ["auth/role/get"]],
  [Auth, "RoleList", ["auth/role/list"]],
  [Auth, "RoleDelete", ["auth/role/delete"]],
  [Auth, "RoleGrantPermission", ["auth/role/grant"]],
  [Auth, "RoleRevokePermission", ["auth/role/revoke"]],
  [Election, "Campaign", ["election/campaign"]],
  [Election, "Proclaim", ["election/proclaim"]],
  [Election, "Leader", ["election/leader"]],
  [Election, "Observe", ["election/observe"]],
  [Election, "Resign", ["election/resign"]],
  [Lock, "Lock", ["lock/lock"]],
  [Lock, "Unlock", ["lock/unlock"]],
];

export interface Route {
  service: DescService;
  method: DescMethod;
}

/** The gateway's methods by path after /v3/ ("kv/range"). */
export function gatewayRoutes(): Map<string, Route> {
  const routes = new Map<string, Route>();
  for (const [service, name, paths] of PATHS) {
    const method = service.methods.find((m) => m.name === name);
    if (!method) throw new Error(`gateway: ${service.typeName} has no method ${name}`);
    for (const p of paths) routes.set(p, { service, method });
  }
  return routes;
}
