// The response header etcd puts on every top-level response.
import type { Rev } from "../mvcc/types.ts";

export interface ServerIdentity {
  clusterId: bigint;
  memberId: bigint;
}

/** strata has no raft; it reports the term a freshly elected single-member etcd has */
export const RAFT_TERM = 2n;

export function header(id: ServerIdentity, revision: Rev) {
  return { clusterId: id.clusterId, memberId: id.memberId, revision, raftTerm: RAFT_TERM };
}
