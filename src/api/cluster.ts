// etcdserverpb.Cluster: strata answers as a one-member cluster. Scaling out means more
// strata processes on a shared database, not raft members, so membership changes fail clearly.
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { Cluster } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { AuthStore } from "./auth-store.ts";
import { caller } from "./caller.ts";
import { etcdErrors } from "./errors.ts";
import { header, type ServerIdentity } from "./header.ts";

export interface Member {
  name: string;
  clientUrls: string[];
}

export function clusterService(id: ServerIdentity, member: Member, auth: AuthStore): ServiceImpl<typeof Cluster> {
  const members = () => [{ ID: id.memberId, name: member.name, peerURLs: [], clientURLs: member.clientUrls }];
  // membership changes are for users of the root role, in etcd; they are refused here after that check
  const unsupported = etcdErrors(async (_r: unknown, ctx: Pick<HandlerContext, "values">): Promise<never> => {
    auth.checkAdmin(auth.identify(caller(ctx)));
    throw new ConnectError(
      "strata: cluster membership cannot change: strata is a single etcd member; run more strata processes on a shared database instead",
      Code.FailedPrecondition,
    );
  });
  return {
    // etcd's cluster service reports no revision in its headers
    memberList: async () => ({ header: header(id, 0n), members: members() }),
    memberAdd: unsupported,
    memberRemove: unsupported,
    memberUpdate: unsupported,
    memberPromote: unsupported,
  };
}
