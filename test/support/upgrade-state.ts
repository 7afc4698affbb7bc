// What an etcd client sees of a strata's keyspace, as plain JSON: every key with its
// value, revisions and version; the history since the compaction (a watch from the
// compact revision, with previous values); leases with their keys; the compact revision;
// the cluster and member IDs. scripts/upgrade-fixtures.ts records it from the previous
// schema's strata beside each fixture, and test/integration/upgrade.test.ts compares
// today's strata on that fixture with it.
import type { Etcd3 } from "etcd3";
import type { Event, KeyValue } from "../../src/gen/etcd/api/mvccpb/kv_pb.ts";
import { rawWatch } from "./raw-watch.ts";
import { until } from "./wait.ts";

export interface KvState {
  key: string;
  value: string;
  createRevision: string;
  modRevision: string;
  version: string;
  lease: string;
}

export interface KeyspaceState {
  clusterId: string;
  memberId: string;
  revision: string;
  compactRevision: string;
  kvs: KvState[];
  /** every event after the compact revision, in order */
  events: { type: string; kv: KvState; prevKv?: KvState }[];
  /** TTL granted, and the keys attached */
  leases: { id: string; grantedTtl: string; keys: string[] }[];
}

/** bytes as base64, so binary keys and values survive JSON */
const b64 = (b: Uint8Array | Buffer) => Buffer.from(b).toString("base64");
const ALL = { key: Buffer.from([0]), range_end: Buffer.from([0]) };

function kvOf(kv: KeyValue): KvState {
  return {
    key: b64(kv.key), value: b64(kv.value), createRevision: String(kv.createRevision), modRevision: String(kv.modRevision),
    version: String(kv.version), lease: String(kv.lease),
  };
}

/** The keyspace state of the strata at endpoint (client: an etcd client of it). */
export async function keyspaceState(endpoint: string, client: Etcd3): Promise<KeyspaceState> {
  const range = await client.kv.range(ALL);
  const revision = BigInt(range.header.revision);
  const kvs = range.kvs.map((kv) => ({
    key: b64(kv.key), value: b64(kv.value), createRevision: String(kv.create_revision), modRevision: String(kv.mod_revision),
    version: String(kv.version), lease: String(kv.lease),
  }));
  const compactRevision = await compactRevisionOf(endpoint);
  const leases = [];
  for (const { ID } of (await client.leaseClient.leaseLeases()).leases.sort((a, b) => (BigInt(a.ID) < BigInt(b.ID) ? -1 : 1))) {
    const t = await client.leaseClient.leaseTimeToLive({ ID, keys: true });
    leases.push({ id: String(ID), grantedTtl: String(t.grantedTTL), keys: t.keys.map(b64).sort() });
  }
  return {
    clusterId: String(range.header.cluster_id), memberId: String(range.header.member_id), revision: String(revision),
    compactRevision: String(compactRevision), kvs, events: await historySince(endpoint, compactRevision, revision), leases,
  };
}

/** The compact revision: a watch from revision 1 is cancelled with it (0 when nothing was compacted). */
async function compactRevisionOf(endpoint: string): Promise<bigint> {
  const w = rawWatch(endpoint);
  try {
    w.send({ requestUnion: { case: "createRequest", value: { key: ALL.key, rangeEnd: ALL.range_end, startRevision: 1n } } });
    // the created response, then either the cancellation or the events from revision 1
    await until(() => w.responses.some((r) => r.canceled || r.events.length > 0), 30_000);
    const cancelled = w.responses.find((r) => r.canceled);
    if (cancelled) return cancelled.compactRevision;
    if (w.responses.some((r) => r.events.length > 0)) return 0n;
    throw new Error(`a watch from revision 1 on ${endpoint} answered neither events nor a cancellation`);
  } finally {
    w.close();
  }
}

/** every event from the compact revision (or 1) up to `revision`, with previous values */
async function historySince(endpoint: string, compactRevision: bigint, revision: bigint): Promise<KeyspaceState["events"]> {
  const w = rawWatch(endpoint);
  try {
    w.send({
      requestUnion: {
        case: "createRequest",
        value: { key: ALL.key, rangeEnd: ALL.range_end, startRevision: compactRevision > 0n ? compactRevision : 1n, prevKv: true },
      },
    });
    const events = (): Event[] => w.responses.flatMap((r) => r.events);
    const last = () => events().at(-1)?.kv?.modRevision ?? 0n;
    // bounded by progress: the replay ends at the revision read above
    let seen = -1;
    for (let rounds = 0; rounds < 100 && last() < revision && !w.responses.some((r) => r.canceled); rounds++) {
      if (events().length === seen) break;
      seen = events().length;
      await until(() => events().length > seen || last() >= revision, 10_000);
    }
    if (last() < revision) throw new Error(`the watch from ${compactRevision} on ${endpoint} stopped at ${last()}, before ${revision}`);
    return events().map((e) => ({ type: e.type === 1 ? "DELETE" : "PUT", kv: kvOf(e.kv!), ...(e.prevKv ? { prevKv: kvOf(e.prevKv) } : {}) }));
  } finally {
    w.close();
  }
}
