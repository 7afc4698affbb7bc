// Automatic compaction, as etcd's --auto-compaction-mode/retention: periodic keeps the
// history of the last retention period, revision keeps the last N revisions.
import { EtcdError } from "../mvcc/errors.ts";
import type { CompactionRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Rev } from "../mvcc/types.ts";
import { log } from "../util/log.ts";

/** what the compactor needs: the revisions and the Compact operation */
export interface Compactable {
  readonly revision: Rev;
  readonly compactRevision: Rev;
  compact(c: CompactionRequest): Promise<unknown>;
}

export type Retention = { mode: "periodic"; retentionMs: number } | { mode: "revision"; retention: bigint };

/** how often revision mode looks, as etcd does */
const REVISION_MODE_INTERVAL_MS = 5 * 60_000;

export class AutoCompactor {
  private timer: ReturnType<typeof setInterval> | undefined;
  /** (time, revision) samples; the oldest one within the window is what periodic mode keeps */
  private samples: Array<{ at: number; revision: Rev }> = [];

  constructor(
    private readonly store: Compactable,
    private readonly retention: Retention,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    const every = this.retention.mode === "periodic"
      ? Math.max(100, Math.min(this.retention.retentionMs / 10, 3_600_000))
      : REVISION_MODE_INTERVAL_MS;
    this.samples.push({ at: this.now(), revision: this.store.revision });
    this.timer = setInterval(() => void this.tick(), every);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** the revision that should become the compaction floor now, if any */
  target(): Rev | undefined {
    if (this.retention.mode === "revision") {
      const t = this.store.revision - this.retention.retention;
      return t > this.store.compactRevision ? t : undefined;
    }
    const now = this.now();
    this.samples.push({ at: now, revision: this.store.revision });
    const cutoff = now - this.retention.retentionMs;
    let target: Rev | undefined;
    while (this.samples.length > 1 && this.samples[0]!.at <= cutoff) target = this.samples.shift()!.revision;
    return target !== undefined && target > this.store.compactRevision ? target : undefined;
  }

  async tick(): Promise<void> {
    const rev = this.target();
    if (rev === undefined) return;
    try {
      await this.store.compact({ revision: rev, physical: false } as never);
    } catch (err) {
      // someone else (kube-apiserver) compacted further meanwhile: nothing to do
      if (err instanceof EtcdError && err.code === "OutOfRange") return;
      log("warn", "auto compaction failed", { revision: String(rev), error: String(err) });
    }
  }
}
