// Maintenance.Snapshot: the whole keyspace — every database backend of the routing config —
// at one revision, as etcd's own snapshot file (src/snapshot), streamed as etcd streams
// it: the database in 32 KiB chunks with the bytes still to come, then its sha256 as a
// last message, which `etcdctl snapshot restore` checks.
//
// The file is built in a temp file first and sent from there: bbolt's meta pages, at the
// head of the file, name pages written last, so no byte can be sent before the last page
// is written. It also means the databases are read at the pace of the disk, not of the
// client: the history a snapshot needs is held only for as long as the read takes.
// Writers are not stopped: history is read in pages at the snapshot's revision, and later
// commits land above it. Compaction is not stopped either, but while the history is read
// no compaction of this process removes any (they do once the read ends); a compaction
// recorded meanwhile (another process's) makes the read start again. One snapshot is
// built at a time (each takes its size in disk).
import { type FileHandle, mkdtemp, open, rm } from "node:fs/promises";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { RangeRequestSchema, type SnapshotRequest, type SnapshotResponseSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { LeaseRecord, Rev } from "../mvcc/types.ts";
import { log } from "../observe/log.ts";
import type { Router } from "../router/router.ts";
import { CompactedMeanwhile, SnapshotError, type SnapshotSource, type SnapshotWritten, writeSnapshot } from "../snapshot/index.ts";
import { Mutex } from "../util/mutex.ts";
import { toConnectError } from "./errors.ts";
import { header, type ServerIdentity } from "./header.ts";

/** etcd's chunk size for snapshot streams */
const CHUNK = 32 * 1024;
const PROGRESS_EVERY_MS = 5000;
/** reads of the history before giving up when compactions keep removing it meanwhile */
const ATTEMPTS = 3;

const building = new Mutex();

export function snapshotStream(
  store: Router,
  id: ServerIdentity,
): (req: SnapshotRequest, ctx: HandlerContext) => AsyncGenerator<MessageInitShape<typeof SnapshotResponseSchema>> {
  return async function* snapshot(_req, ctx) {
    const upstream = [...store.upstreams.keys()][0];
    if (upstream !== undefined) {
      throw new ConnectError(
        `strata: backend ${upstream} is an upstream etcd, whose keys strata does not hold; take its snapshot from that etcd (etcdctl --endpoints ETCD snapshot save)${store.parts.length > 0 ? " and this one from a config without it" : ""}`,
        Code.FailedPrecondition,
      );
    }
    const dir = await mkdtemp(join(tmpdir(), "strata-snapshot-"));
    try {
      const file = await open(join(dir, "db"), "w+");
      try {
        const started = Date.now();
        const written = await building.run(async () => {
          for (let attempt = 1;; attempt++) {
            try {
              await file.truncate(0);
              return await holdingHistory(store, () => readInto(file, store, ctx.signal));
            } catch (err) {
              if (!(err instanceof CompactedMeanwhile) || attempt === ATTEMPTS) throw err;
              log("info", "snapshot: history was compacted while it was read; reading again", { error: err.message });
            }
          }
        }).catch((err) => {
          if (ctx.signal.aborted) {
            log("info", "snapshot: abandoned by the client while being written");
            throw new ConnectError("strata: snapshot cancelled", Code.Canceled);
          }
          if (err instanceof SnapshotError || err instanceof CompactedMeanwhile) throw new ConnectError(`strata: ${err.message}`, Code.Aborted);
          // the temp file's own trouble (a full disk), not the databases'
          const code = (err as NodeJS.ErrnoException).code;
          if (typeof code === "string" && /^E[A-Z]+$/.test(code) && (err as NodeJS.ErrnoException).syscall) {
            throw new ConnectError(`strata: cannot write the snapshot's temp file in ${tmpdir()} (set TMPDIR to a directory with room for it): ${(err as Error).message}`, Code.ResourceExhausted);
          }
          throw toConnectError(err);
        });
        log("info", "snapshot: written", { revision: written.revision, entries: written.entries, leases: written.leases, bytes: written.size, ms: Date.now() - started });
        const h = header(id, written.revision);
        const hash = createHash("sha256");
        const buf = new Uint8Array(CHUNK);
        let lastLog = Date.now();
        for (let sent = 0; sent < written.size;) {
          if (Date.now() - lastLog >= PROGRESS_EVERY_MS) {
            lastLog = Date.now();
            log("info", "snapshot: sending", { revision: written.revision, sent, bytes: written.size });
          }
          const { bytesRead } = await file.read(buf, 0, Math.min(CHUNK, written.size - sent), sent);
          if (bytesRead === 0) throw new ConnectError("strata: the snapshot's temp file ended early", Code.Internal);
          const blob = buf.slice(0, bytesRead);
          hash.update(blob);
          sent += bytesRead;
          yield { header: h, remainingBytes: BigInt(written.size - sent), blob };
        }
        yield { header: h, remainingBytes: 0n, blob: new Uint8Array(hash.digest()) };
        log("info", "snapshot: sent", { revision: written.revision, bytes: written.size + 32, ms: Date.now() - started });
      } finally {
        await file.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };
}

/** Runs read with every database's history held (compactions remove theirs afterwards). */
function holdingHistory<T>(store: Router, read: () => Promise<T>): Promise<T> {
  return store.parts.reduceRight<() => Promise<T>>((inner, p) => () => p.store.holdHistory(inner), read)();
}

async function readInto(file: FileHandle, store: Router, signal: AbortSignal): Promise<SnapshotWritten> {
  // one revision for every backend: a merged read raises the laggards to it, so none
  // commits at or below it afterwards
  const everything = await store.range(create(RangeRequestSchema, { key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]), countOnly: true }));
  const revision = everything.header.revision;
  const compactRevision = await compactedAt(store);
  log("info", "snapshot: started", { revision, compactRevision, keys: everything.count, backends: store.parts.map((p) => p.name) });
  return writeSnapshot(file, routerSource(store, revision, compactRevision), log, signal);
}

/** the compaction recorded in the databases (by any process) */
async function compactedAt(store: Router): Promise<Rev> {
  const revs = await Promise.all(store.parts.map((p) => p.backend.revisions()));
  return revs.reduce((a, r) => (r.compactRevision > a ? r.compactRevision : a), 0n);
}

/** the router's databases as a snapshot's source, read at revision */
function routerSource(store: Router, revision: Rev, compactRevision: Rev): SnapshotSource {
  return {
    revision,
    compactRevision,
    events: (from, to, limit, opts) => store.events(from, to, limit, opts),
    // leases live in the default backend; an import or a move may have put copies in others
    leases: async () => {
      const all = new Map<Rev, LeaseRecord>();
      for (const p of store.parts) for (const l of await p.backend.leases()) if (!all.has(l.id)) all.set(l.id, l);
      return [...all.values()];
    },
    compactRevisionNow: () => compactedAt(store),
  };
}
