// etcdserverpb.Maintenance: what etcdctl's endpoint status/health/hashkv, defrag and
// alarm commands call. strata raises no alarms (its database enforces its own quotas).
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { Maintenance } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { checkRevision } from "../engine/revisions.ts";
import type { Router } from "../router/router.ts";
import { crc32 } from "./crc32.ts";
import { etcdErrors } from "./errors.ts";
import { header, RAFT_TERM, type ServerIdentity } from "./header.ts";

/** the etcd API version strata implements, reported by Status */
export const ETCD_API_VERSION = "3.5.17";

export function maintenanceService(store: Router, id: ServerIdentity): ServiceImpl<typeof Maintenance> {
  const unsupported = (what: string) => async (): Promise<never> => {
    throw new ConnectError(`strata: ${what}`, Code.Unimplemented);
  };
  /** crc32 over every live key and value at rev, in key order */
  const hashAt = async (rev: bigint) => {
    const res = await store.all(rev);
    let h = 0;
    for (const kv of res.kvs) h = crc32(kv.value, crc32(kv.key, h));
    return { hash: h, revision: res.revision };
  };
  return {
    status: etcdErrors(async () => {
      const size = await store.size();
      const revision = store.revision;
      return {
        header: header(id, revision),
        version: ETCD_API_VERSION,
        dbSize: size.size,
        dbSizeInUse: size.inUse,
        leader: id.memberId,
        raftIndex: BigInt(revision),
        raftTerm: RAFT_TERM,
        raftAppliedIndex: BigInt(revision),
        errors: [],
        isLearner: false,
      };
    }),
    alarm: async () => ({ header: header(id, store.revision), alarms: [] }),
    defragment: etcdErrors(async () => {
      await store.defragment();
      return { header: header(id, store.revision) };
    }),
    hash: etcdErrors(async () => {
      const h = await hashAt(0n);
      return { header: header(id, h.revision), hash: h.hash };
    }),
    hashKV: etcdErrors(async (r) => {
      const at = checkRevision(r.revision, store.revision, store.compactRevision);
      const h = await hashAt(at);
      return { header: header(id, h.revision), hash: h.hash, compactRevision: store.compactRevision, hashRevision: at };
    }),
    snapshot: unsupported(
      "etcd snapshots are not supported; back up the database itself (for SQLite: sqlite3 strata.db '.backup copy.db')",
    ) as never,
    moveLeader: unsupported("strata has no raft leader to move"),
    downgrade: unsupported("cluster downgrade does not apply to strata"),
  };
}
