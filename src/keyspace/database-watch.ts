// The watchers one client stream places in the databases: each is a Watcher in the watch
// hub, which sends it the merged commits (or history, while it catches up). A watch
// without a start revision begins after the newest write acknowledged to any client, and
// a progress answer waits until the merged order has reached that revision and every
// watcher on the stream has been given everything up to it, so it never overtakes events.
import type { WatchCreateRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { compareBytes, toKeyRange } from "../mvcc/keyrange.ts";
import type { Rev } from "../mvcc/types.ts";
import type { WatchResponseOut, WatchSession, WatchStream } from "./contract.ts";
import { type WatchHub, Watcher, type WatchSink } from "./watch-hub.ts";

const NOPUT = 0, NODELETE = 1;
/** watch_id of a progress response that concerns every watcher on the stream */
const ALL_WATCHERS = -1n;

/** the revisions a session reads: the merged order's and the newest acknowledged */
export interface Revisions {
  readonly revision: Rev;
  readonly latestRevision: Rev;
}

export class DatabaseWatch implements WatchSession {
  closed = false;
  private readonly watchers = new Map<bigint, Watcher>();
  /** the watchers that asked for fragments (made on first use: a stream per watcher is common) */
  private fragmenting: Set<bigint> | undefined;
  private nextId = 0n;
  /** the stream as the hub's watchers write to it */
  private readonly sink: WatchSink;
  /** a progress request waits for the watchers to catch up; "each": answered per watcher */
  private progressPending: "all" | "each" | undefined;
  private progressTarget = 0n;
  private progressTimer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly hub: WatchHub,
    private readonly revisions: Revisions,
    readonly stream: WatchStream,
  ) {
    this.sink = new SessionSink(this);
  }

  create(c: WatchCreateRequest, id?: bigint): void {
    // a watch without a start revision begins after every write already acknowledged
    const current = this.revisions.latestRevision;
    // an empty key is the smallest key, "\0"
    const key = c.key.length === 0 ? new Uint8Array([0]) : c.key;
    const range = toKeyRange(key, c.rangeEnd);
    let watchId = id ?? c.watchId;
    if (id === undefined && c.watchId === 0n) {
      while (this.watchers.has(this.nextId)) this.nextId++;
      watchId = this.nextId++;
    }
    let error: string | undefined;
    if (c.watchId !== 0n && this.watchers.has(watchId)) {
      // the id stays with the watcher holding it
      error = "mvcc: duplicate watch ID provided on the WatchStream";
    } else if (range.end !== undefined && c.rangeEnd.length > 0 && compareBytes(key, range.end) >= 0) {
      error = "mvcc: watcher range is empty";
      this.stream.forget(watchId);
    }
    if (error) {
      this.send({ header: { revision: current }, watchId: -1n, created: true, canceled: true, cancelReason: error, events: [] });
      return;
    }
    const start = c.startRevision === 0n ? current + 1n : c.startRevision;
    const w = new Watcher(watchId, range, start, {
      prevKv: c.prevKv,
      noPut: c.filters.includes(NOPUT),
      noDelete: c.filters.includes(NODELETE),
      progressNotify: c.progressNotify,
      own: this.stream.own === true,
    }, this.sink);
    this.watchers.set(watchId, w);
    if (c.fragment) (this.fragmenting ??= new Set()).add(watchId);
    this.send({ header: { revision: current }, watchId, created: true, events: [] });
    this.hub.add(w);
  }

  cancel(watchId: bigint): void {
    const w = this.watchers.get(watchId);
    if (!w) return;
    this.drop(w);
    this.send({ header: { revision: this.revisions.latestRevision }, watchId, canceled: true, events: [] });
  }

  private drop(w: Watcher): void {
    this.hub.remove(w);
    this.watchers.delete(w.id);
    this.fragmenting?.delete(w.id);
    this.stream.forget(w.id);
  }

  /** a response from the hub: a watcher canceled by compaction is gone */
  sent(resp: WatchResponseOut): boolean | void {
    if (resp.canceled && resp.compactRevision) {
      const w = this.watchers.get(resp.watchId);
      if (w) this.drop(w);
    }
    return this.send(resp);
  }

  private send(resp: WatchResponseOut): boolean | void {
    return this.stream.send(resp, this.fragmenting?.has(resp.watchId) === true);
  }

  /**
   * Answers with the current revision once every watcher here has been sent every event
   * up to it (until then the answer waits, so it never overtakes events).
   */
  requestProgress(each = false): void {
    this.progressPending = each ? "each" : "all";
    this.progressTarget = this.revisions.latestRevision;
    if (this.answerProgress()) return;
    this.progressTimer ??= setInterval(() => {
      if (this.progressPending && this.answerProgress()) {
        clearInterval(this.progressTimer);
        this.progressTimer = undefined;
      }
    }, 20);
  }

  /**
   * Sends the pending progress answer once every watcher is synced and the merged order
   * has reached the newest write acknowledged when it was asked for.
   */
  private answerProgress(): boolean {
    const revision = this.revisions.revision;
    if (revision < this.progressTarget) return false;
    if (![...this.watchers.values()].every((w) => this.hub.isSynced(w))) return false;
    const header = { revision };
    if (this.progressPending === "each") for (const w of this.watchers.values()) this.send({ header, watchId: w.id, events: [] });
    else this.send({ header, watchId: ALL_WATCHERS, events: [] });
    this.progressPending = undefined;
    return true;
  }

  close(): void {
    this.closed = true;
    for (const w of this.watchers.values()) this.hub.remove(w);
    this.watchers.clear();
    if (this.progressTimer) clearInterval(this.progressTimer);
  }
}

/** The stream as the hub's watchers of one session write to it: an object of its own, not three closures per stream. */
class SessionSink implements WatchSink {
  constructor(private readonly session: DatabaseWatch) {}

  send(r: WatchResponseOut): boolean | void {
    return this.session.sent(r);
  }

  congested(): boolean {
    return this.session.stream.congested();
  }

  drained(): Promise<void> {
    return this.session.stream.drained();
  }
}
