// etcdserverpb.Maintenance: what etcdctl's endpoint status/health/hashkv, defrag, snapshot save and
// alarm commands call. Alarms are strata's own (NOSPACE, mvcc/alarms.ts) and any
// upstream etcd's. Over a single upstream etcd, Status, Hash and HashKV are etcd's.
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { AlarmRequest_AlarmAction, AlarmType, Maintenance } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { AlarmMember } from "../mvcc/alarms.ts";
import { checkRevision } from "../mvcc/revisions.ts";
import type { Router } from "../router/router.ts";
import { crc32 } from "../util/crc32.ts";
import { etcdErrors } from "./errors.ts";
import { header, RAFT_TERM, type ServerIdentity } from "./header.ts";
import { snapshotStream } from "./snapshot.ts";

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
  // the upstream etcd when it is the only backend
  const only = store.parts.length === 0 && store.upstreams.size === 1 ? [...store.upstreams.values()][0] : undefined;
  return {
    status: etcdErrors(async () => {
      if (only) {
        const { $typeName: _, ...s } = await only.status();
        // strata is the member the client talks to
        return { ...s, header: header(id, s.header!.revision), leader: id.memberId };
      }
      const size = await store.size();
      const upstream = store.defaultUpstream;
      const revision = upstream ? (await upstream.status()).header!.revision : store.latestRevision;
      return {
        header: header(id, revision),
        version: ETCD_API_VERSION,
        dbSize: size.size,
        dbSizeInUse: size.inUse,
        leader: id.memberId,
        raftIndex: BigInt(revision),
        raftTerm: RAFT_TERM,
        raftAppliedIndex: BigInt(revision),
        errors: store.alarms.list().map(alarmText),
        isLearner: false,
      };
    }),
    alarm: etcdErrors(async (r) => {
      // etcd exits on an action it does not know (its applier answers nothing, and the
      // server panics) and, 3.4, on activating "no alarm" for member 0: such requests,
      // which ask for nothing, are answered here and never reach an upstream etcd
      const harmful = !(r.action in AlarmRequest_AlarmAction) || (r.action === AlarmRequest_AlarmAction.ACTIVATE && r.alarm === AlarmType.NONE);
      const answers = harmful ? [] : await Promise.all([...store.upstreams.values()].map((u) => u.alarm(r)));
      const own: AlarmMember[] = [];
      const alarms = store.alarms;
      if (r.action === AlarmRequest_AlarmAction.GET) own.push(...alarms.list(r.alarm));
      else if (r.action === AlarmRequest_AlarmAction.ACTIVATE) own.push(alarms.activate(r.memberID, r.alarm));
      else if (r.action === AlarmRequest_AlarmAction.DEACTIVATE) own.push(...[alarms.deactivate(r.memberID, r.alarm)].filter((a) => a !== undefined));
      return {
        header: header(id, answers[0]?.header?.revision ?? store.latestRevision),
        alarms: [...own.map((a) => ({ memberID: a.memberId, alarm: a.alarm })), ...answers.flatMap((a) => a.alarms)],
      };
    }),
    defragment: etcdErrors(async () => {
      await store.defragment();
      return { header: header(id, store.latestRevision) };
    }),
    hash: etcdErrors(async () => {
      if (only) {
        const h = await only.hash();
        return { header: header(id, h.header!.revision), hash: h.hash };
      }
      const h = await hashAt(0n);
      return { header: header(id, h.revision), hash: h.hash };
    }),
    hashKV: etcdErrors(async (r) => {
      if (only) {
        const { $typeName: _, ...h } = await only.hashKV(r);
        return { ...h, header: header(id, h.header!.revision) };
      }
      const at = checkRevision(r.revision, store.latestRevision, store.compactRevision);
      const h = await hashAt(at);
      return { header: header(id, h.revision), hash: h.hash, compactRevision: store.compactRevision, hashRevision: at };
    }),
    // etcd's snapshot file of every database backend at one revision (snapshot.ts)
    snapshot: snapshotStream(store, id),
    moveLeader: unsupported("strata has no raft leader to move"),
    downgrade: unsupported("cluster downgrade does not apply to strata"),
  };
}

/** an alarm as etcd's Status lists it: the AlarmMember in protobuf's compact text form */
function alarmText(a: AlarmMember): string {
  return `memberID:${a.memberId} alarm:${AlarmType[a.alarm]} `;
}
