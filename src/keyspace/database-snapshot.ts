// The databases' side of Maintenance.Snapshot: every backend's history and leases at one
// revision, as a source for etcd's snapshot file (src/snapshot). While it is read, no
// compaction of this process removes history (they run once the read ends); a compaction
// recorded meanwhile by another process is seen by the writer, which then starts again.
import { create } from "@bufbuild/protobuf";
import { RangeRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { LeaseRecord, Rev } from "../mvcc/types.ts";
import { log } from "../util/log.ts";
import type { Router } from "../router/router.ts";
import type { SnapshotSource } from "../snapshot/index.ts";
import type { Keyspace } from "./contract.ts";

/** Gives `write` the router's databases at one revision, with every database's history held. */
export function databaseSnapshot<T>(router: Router, keyspace: Keyspace, write: (source: SnapshotSource) => Promise<T>): Promise<T> {
  const held = router.parts.reduceRight<() => Promise<T>>((inner, p) => () => p.store.holdHistory(inner), async () => {
    // one revision for every backend: a merged read raises the laggards to it, so none
    // commits at or below it afterwards
    const everything = await keyspace.range(create(RangeRequestSchema, { key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]), countOnly: true }));
    const revision = everything.header.revision;
    const compactRevision = await compactedAt(router);
    log("info", "snapshot: started", { revision, compactRevision, keys: everything.count, backends: router.parts.map((p) => p.name) });
    return write({
      revision,
      compactRevision,
      events: (from, to, limit, opts) => router.events(from, to, limit, opts),
      // leases live in the default backend; an import or a move may have put copies in others
      leases: async () => {
        const all = new Map<Rev, LeaseRecord>();
        for (const p of router.parts) for (const l of await p.backend.leases()) if (!all.has(l.id)) all.set(l.id, l);
        return [...all.values()];
      },
      compactRevisionNow: () => compactedAt(router),
    });
  });
  return held();
}

/** the compaction recorded in the databases (by any process) */
async function compactedAt(router: Router): Promise<Rev> {
  const revs = await Promise.all(router.parts.map((p) => p.backend.revisions()));
  return revs.reduce((a, r) => (r.compactRevision > a ? r.compactRevision : a), 0n);
}
