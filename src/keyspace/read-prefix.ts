// Every key of a range read at one revision, a page at a time: what strata's own followers
// (CRDs, TopologyConfigs) read before they watch from the revision after it.
import { create } from "@bufbuild/protobuf";
import { RangeRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { KeyValue } from "../mvcc/types.ts";
import type { Keyspace } from "./contract.ts";

/** Hands every key-value in [start, end) to `each`, pages of `page`; returns the revision read at. */
export async function readAtOneRevision(
  keyspace: Keyspace,
  start: Uint8Array,
  end: Uint8Array,
  page: bigint,
  each: (kv: KeyValue) => void,
): Promise<bigint> {
  let revision = 0n;
  let from = start;
  for (;;) {
    const got = await keyspace.range(create(RangeRequestSchema, { key: from, rangeEnd: end, revision, limit: page }));
    if (revision === 0n) revision = got.header.revision;
    for (const kv of got.kvs) each(kv);
    const last = got.kvs.at(-1);
    if (!got.more || !last) return revision;
    from = new Uint8Array([...last.key, 0]);
  }
}
