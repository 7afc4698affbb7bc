// The write view on NATS: a batch runs against this process's copy of the log
// (follower.ts) and is appended to the log with compare-and-swap on the log's last
// sequence; when another process appended first, the batch is rolled back, the copy
// catches up and the batch runs again. So every process applies the same batches in
// the same order and holds the same revisions.
import type { WriteResult, WriteTx, WriteView } from "../../mvcc/backend.ts";
import type { Rev } from "../../mvcc/types.ts";
import type { Mutation } from "../../gen/strata/nats/v1/log_pb.ts";
import type { LogFollower } from "./follower.ts";
import { LogMoved } from "./log.ts";
import { encodeBatch, RecordingTx } from "./mutations.ts";

/** how long a write lets another process finish a batch it is appending in chunks */
const CHUNKED_WRITE_GRACE_MS = 2_000;

export class NatsWrites implements WriteView {
  constructor(private readonly follower: LogFollower) {}

  async write<T>(txns: Array<(tx: WriteTx) => Promise<T>>, keys: Uint8Array[] = []): Promise<WriteResult<T>[]> {
    for (;;) {
      await this.chunkedWriterDone();
      const out = await this.follower.lock.run(() => this.writeOnce(txns, keys));
      if (!(out instanceof LogMoved)) return out;
      await this.follower.caughtUp(out.last);
    }
  }

  /** Runs the batch on the copy and appends what it changed; LogMoved when another process got first. Holds the lock. */
  private async writeOnce<T>(txns: Array<(tx: WriteTx) => Promise<T>>, keys: Uint8Array[]): Promise<WriteResult<T>[] | LogMoved> {
    const f = this.follower;
    f.check();
    const mutations: Mutation[] = [];
    const recorded = txns.map((fn) => async (tx: WriteTx) => {
      const rec = new RecordingTx(tx);
      const value = await fn(rec);
      // a transaction that failed changed nothing
      mutations.push(...rec.mutations);
      return value;
    });
    let appended = f.seen;
    try {
      const results = await f.copy().writeThrough(recorded, keys, async () => {
        if (mutations.length === 0) {
          // nothing to append, but the answers must be as fresh as a read's
          const last = await f.log.lastSeq();
          if (last > f.seen) throw new LogMoved(last);
          return undefined;
        }
        appended = await f.log.append(encodeBatch(mutations), f.seen, crypto.randomUUID());
        return appended;
      });
      if (appended > f.seen) {
        f.assembler.reset();
        f.advance(appended);
      }
      return results;
    } catch (err) {
      if (err instanceof LogMoved) return err;
      throw err;
    }
  }

  /** Gives a batch another process is appending in chunks time to finish before a write cuts it off. */
  private async chunkedWriterDone(): Promise<void> {
    for (;;) {
      const since = this.follower.assembler.pendingSince;
      if (since === undefined || Date.now() - since >= CHUNKED_WRITE_GRACE_MS) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** A renewal is a write batch here: every process's copy must see the new deadline. */
  async renewLease(id: Rev, now: number): Promise<Rev> {
    const [r] = await this.write([async (tx) => {
      // an expired lease is gone, even before its keys have been deleted
      if (!(await tx.leaseExists(id)) || (await tx.leaseExpired(id, now))) return 0n;
      // the lock is held and this batch wrote nothing yet: the copy's lease row is current
      const lease = await this.follower.copy().lease(id);
      if (!lease) throw new Error(`lease ${id} vanished from the copy while the lock was held`);
      await tx.leaseDelete(id);
      await tx.leaseInsert({ ...lease, expiresAt: now + Number(lease.ttl) * 1000 });
      return lease.ttl;
    }]);
    if (!r) throw new Error("a write batch of one transaction gave no result");
    if (!r.ok) throw r.error;
    return r.value;
  }
}
