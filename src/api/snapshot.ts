// Maintenance.Snapshot: the whole keyspace — every database backend of the routing config,
// read by the keyspace (keyspace/database-snapshot.ts) — at one revision, as etcd's own snapshot file (src/snapshot), streamed as etcd streams
// it (with etcd's users and roles in its auth buckets): the database in 32 KiB chunks with the bytes still to come, then its sha256 as a
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
import { mkdtemp, open, rm } from "node:fs/promises";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SnapshotRequest, SnapshotResponseSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Keyspace } from "../keyspace/contract.ts";
import { log } from "../util/log.ts";
import { CompactedMeanwhile, type SnapshotAuth, SnapshotError, writeSnapshot } from "../snapshot/index.ts";
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
  keyspace: Keyspace,
  id: ServerIdentity,
  /** the users and roles for etcd's auth buckets */
  auth: () => Promise<SnapshotAuth | undefined>,
): (req: SnapshotRequest, ctx: HandlerContext) => AsyncGenerator<MessageInitShape<typeof SnapshotResponseSchema>> {
  return async function* snapshot(_req, ctx) {
    const dir = await mkdtemp(join(tmpdir(), "strata-snapshot-"));
    try {
      const file = await open(join(dir, "db"), "w+");
      try {
        const started = Date.now();
        const users = await auth();
        const written = await building.run(async () => {
          for (let attempt = 1;; attempt++) {
            try {
              await file.truncate(0);
              return await keyspace.snapshot((source) => writeSnapshot(file, source, log, ctx.signal, Date.now(), users));
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
