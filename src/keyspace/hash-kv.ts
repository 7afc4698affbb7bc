// Maintenance.HashKV as etcd 3.4 computes it (mvcc's store.HashByRev): a CRC-32C over the
// bucket name "key", then the bbolt key (the revision: main, '_', sub, and 't' for a
// deletion) and value (mvccpb.KeyValue; a deletion holds only the key) of every revision
// the store still holds up to rev. Revisions above the compaction all count; of those at or
// below it (what compaction kept: each key's version live at the compact revision), only
// the ones still each key's newest at rev count — or all of them when no key is live at
// rev. The same history gives etcd's hash; lease IDs are strata's own, so a store whose
// keys carry leases hashes differently from an etcd's.
import { Buffer } from "node:buffer";
import { create, toBinary } from "@bufbuild/protobuf";
import { KeyValueSchema } from "../gen/etcd/api/mvccpb/kv_pb.ts";
import { DELETE, type Rev } from "../mvcc/types.ts";
import type { Router } from "../router/router.ts";
import { BUCKETS, revisionKey } from "../snapshot/etcd-layout.ts";
import { crc32c } from "../util/crc32c.ts";

/** history events read per page, and bytes of keys and values per page */
const PAGE_EVENTS = 2000;
const PAGE_BYTES = 4 << 20;

/** etcd's HashKV of the router's databases at rev (> compactRevision), history held while read */
export function hashKV(router: Router, rev: Rev, compactRevision: Rev): Promise<number> {
  const held = router.parts.reduceRight<() => Promise<number>>((inner, p) => () => p.store.holdHistory(inner), () => hashHistory(router, rev, compactRevision));
  return held();
}

async function hashHistory(router: Router, rev: Rev, compacted: Rev): Promise<number> {
  // each key's newest revision among the keys live at rev; when there are none, the
  // revisions compaction kept (those live at the compact revision) all count
  let newest = await liveRevisions(router, rev);
  if (newest.size === 0 && compacted > 0n) newest = await liveRevisions(router, compacted);
  let h = crc32c(BUCKETS.key);
  let from = 1n;
  while (from <= rev) {
    // the sub revisions as stored: compaction may have removed a revision's other changes
    const page = await router.events(from, rev, PAGE_EVENTS, { prevKv: false, bytes: PAGE_BYTES, subs: true });
    for (const e of page.events) {
      const main = e.kv.modRevision;
      const sub = e.sub ?? 0n;
      if (main <= compacted && newest.get(keyOf(e.kv.key)) !== main) continue;
      const tombstone = e.type === DELETE;
      const kv = tombstone ? create(KeyValueSchema, { key: e.kv.key }) : create(KeyValueSchema, e.kv);
      h = crc32c(toBinary(KeyValueSchema, kv), crc32c(revisionKey(main, sub, tombstone), h));
    }
    if (page.through < from) throw new Error(`history read made no progress at revision ${from}`);
    from = page.through + 1n;
  }
  return h;
}

async function liveRevisions(router: Router, rev: Rev): Promise<Map<string, Rev>> {
  const { kvs } = await router.all(rev);
  return new Map(kvs.map((kv) => [keyOf(kv.key), kv.modRevision]));
}

const keyOf = (k: Uint8Array) => Buffer.from(k).toString("latin1");
