// etcdserverpb.Auth: strata does not implement etcd's user/role authentication (use TLS
// client certificates); it reports auth as disabled, so clients that probe it carry on.
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { Auth } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { errors } from "../mvcc/errors.ts";
import type { Keyspace } from "../keyspace/contract.ts";
import { toConnectError } from "./errors.ts";
import { header, type ServerIdentity } from "./header.ts";

export function authService(keyspace: Keyspace, id: ServerIdentity): ServiceImpl<typeof Auth> {
  const unsupported = async (): Promise<never> => {
    throw new ConnectError(
      "strata: etcd user/role authentication is not supported; secure clients with TLS client certificates",
      Code.Unimplemented,
    );
  };
  return {
    authStatus: async () => ({ header: header(id, keyspace.latestRevision), enabled: false, authRevision: 0n }),
    authenticate: async () => {
      throw toConnectError(errors.authNotEnabled());
    },
    authEnable: unsupported,
    authDisable: async () => ({ header: header(id, keyspace.latestRevision) }),
    userAdd: unsupported,
    userGet: unsupported,
    userList: unsupported,
    userDelete: unsupported,
    userChangePassword: unsupported,
    userGrantRole: unsupported,
    userRevokeRole: unsupported,
    roleAdd: unsupported,
    roleGet: unsupported,
    roleList: unsupported,
    roleDelete: unsupported,
    roleGrantPermission: unsupported,
    roleRevokePermission: unsupported,
  };
}
