// The history view on NATS: events from this process's copy, compaction here and, once
// the log has grown by snapshot-count entries, a snapshot that lets the log be purged.
import type { EventsOptions, EventsPage, HistoryView } from "../../mvcc/backend.ts";
import type { Rev } from "../../mvcc/types.ts";
import { rmSync } from "node:fs";
import type { LogFollower } from "./follower.ts";
import type { Snapshots } from "./snapshots.ts";

export class NatsHistory implements HistoryView {
  constructor(
    private readonly follower: LogFollower,
    private readonly snapshots: Snapshots,
    /** log entries between snapshots (like etcd's --snapshot-count) */
    private readonly snapshotCount: number,
  ) {}

  /** callers ask for revisions they know exist: the copy has them */
  events(from: Rev, to: Rev, limit: number, opts?: EventsOptions): Promise<EventsPage> {
    return this.follower.reading((c) => c.events(from, to, limit, opts));
  }

  /**
   * Removes history here; once the log has grown by snapshot-count entries since the
   * newest snapshot, stores a new one (like etcd's --snapshot-count: making it holds this
   * process up for as long as SQLite takes to copy the data). Then purges the log up to
   * the newest snapshot.
   */
  async compact(rev: Rev): Promise<void> {
    const f = this.follower;
    await f.reading((c) => c.compact(rev));
    let newest = await this.snapshots.newest();
    if (f.seen - newest >= this.snapshotCount) newest = await this.snapshot();
    // what another live process has not read yet stays: it would have to reload the snapshot
    if (newest > 0) await f.log.purgeThrough(Math.min(newest, await f.log.readByOthers()));
  }

  /** Stores a snapshot of the copy; resolves to the log sequence it holds. */
  private async snapshot(): Promise<number> {
    const file = this.follower.newFile("snapshot");
    try {
      const seq = await this.follower.reading((c) => c.saveTo(file));
      await this.snapshots.save(file, seq);
      return seq;
    } finally {
      rmSync(file, { force: true });
    }
  }

  /** batches of other processes, applied to the copy (follower.ts) */
  onExternalCommit(notify: () => void): () => void {
    this.follower.listeners.add(notify);
    return () => this.follower.listeners.delete(notify);
  }
}
