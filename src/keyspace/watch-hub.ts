// Fans committed events out to watchers. A synced watcher gets each revision as it is
// committed; an unsynced one (starting in the past, or whose stream fell behind)
// catches up from the backend's history and then joins the synced set. Writers never
// wait for watchers: a stream whose queue is full simply drops back to catching up.
// Each unsynced watcher catches up in a task of its own that waits only for its own
// client and for history reads, so a client that never reads again holds up nobody else.
import type { HistoryView } from "../mvcc/backend.ts";
import { HistoryPages } from "./history-pages.ts";
import { keyString, rangeString } from "../mvcc/keyrange.ts";
import { DELETE, type Event, type KeyRange, PUT, type Rev } from "../mvcc/types.ts";
import { log } from "../util/log.ts";
import type { WatchResponseOut } from "./contract.ts";
import { WatchedRanges } from "./watched-ranges.ts";

/** how long a catch-up that failed to read history waits before trying again */
const RETRY_MS = 1000;

/** One client stream: watchers on it share its outgoing queue. */
export interface WatchSink {
  /** false: the response said nothing to the client (a selection filtered out its every event) */
  send(resp: WatchResponseOut): boolean | void;
  /** true while the client is not keeping up; synced watchers then fall back to catch-up */
  congested(): boolean;
  /** resolves when the queue has room again */
  drained(): Promise<void>;
}

/** each event without its previous value, made once so watchers share its encoding */
const stripped = new WeakMap<Event, Event>();

export function withoutPrevKv(ev: Event): Event {
  let s = stripped.get(ev);
  if (!s) stripped.set(ev, (s = { type: ev.type, kv: ev.kv }));
  return s;
}

export class Watcher {
  /** the next revision this watcher has to deliver */
  nextRev: Rev;
  /** whether anything was sent since the last progress tick */
  sentSinceTick = false;
  closed = false;
  /** its range as the hub's groups are keyed, made once: watchers leave and join often */
  private rangeKey: string | undefined;
  /** which of the SHAPES its options are: watchers of one shape are sent the same list of events */
  readonly shapeIndex: number;

  constructor(
    readonly id: bigint,
    readonly range: KeyRange,
    startRev: Rev,
    /** own: strata's own watcher, not a client's (not counted in `size`) */
    readonly opts: { prevKv: boolean; noPut: boolean; noDelete: boolean; progressNotify: boolean; own?: boolean },
    readonly sink: WatchSink,
  ) {
    this.nextRev = startRev;
    this.shapeIndex = (opts.noPut ? 1 : 0) | (opts.noDelete ? 2 : 0) | (opts.prevKv ? 4 : 0);
  }

  get rangeId(): string {
    return (this.rangeKey ??= rangeString(this.range));
  }

  /** events already known to be in its range, filtered and shaped as it asked */
  shape(events: Event[]): Event[] {
    const { noPut, noDelete, prevKv } = this.opts;
    if (!noPut && !noDelete && (prevKv || events.every((ev) => !ev.prevKv))) return events;
    const out: Event[] = [];
    for (const ev of events) {
      if (ev.type === PUT && noPut) continue;
      if (ev.type === DELETE && noDelete) continue;
      out.push(prevKv || !ev.prevKv ? ev : withoutPrevKv(ev));
    }
    return out;
  }
}

/** the combinations of the options that shape a watcher's events (noPut, noDelete, prevKv) */
const SHAPES = 8;

/** synced watchers of one range: each event is matched against the range once for all of them */
interface RangeGroup {
  range: KeyRange;
  watchers: Set<Watcher>;
  /** the events of the revision being published that are in the range */
  matched: Event[];
}

export class WatchHub {
  private readonly synced = new Set<Watcher>();
  private readonly groups = new Map<string, RangeGroup>();
  /** the groups by range: an event finds the groups it concerns without a look at the others */
  private readonly index = new WatchedRanges<RangeGroup>();
  /** watchers whose catch-up task runs */
  private readonly unsynced = new Set<Watcher>();
  /** strata's own watchers, among the synced and unsynced */
  private readonly own = new Set<Watcher>();
  private readonly pages: HistoryPages;
  /**
   * The last revision published. A synced watcher has been given everything up to it that
   * it watches: its own nextRev is only kept up to date when it gets events, so the next
   * revision it needs is the larger of the two.
   */
  private published = 0n;
  /** a progress tick waiting for this revision to be published */
  private tickAt: Rev | undefined;

  constructor(
    /** where catch-up reads history */
    history: Pick<HistoryView, "events">,
    /**
     * the newest published (merged) revision, the newest acknowledged to any client (ahead
     * of it while backends are raised to it), and the compaction floor, kept by the store
     */
    private readonly revisions: () => { revision: Rev; latest: Rev; compactRevision: Rev },
  ) {
    this.pages = new HistoryPages(history);
  }

  /** the clients' watchers (metrics and the status page count these) */
  get size(): number {
    return this.synced.size + this.unsynced.size - this.own.size;
  }

  add(w: Watcher): void {
    if (w.opts.own) this.own.add(w);
    if (w.nextRev > this.revisions().revision) this.join(w);
    else this.unsync(w);
  }

  remove(w: Watcher): void {
    w.closed = true;
    this.own.delete(w);
    this.leave(w);
    this.unsynced.delete(w);
  }

  isSynced(w: Watcher): boolean {
    return this.synced.has(w);
  }

  /** Delivers one committed revision to every synced watcher it concerns. */
  publish(revision: Rev, events: Event[]): void {
    const { compactRevision } = this.revisions();
    const seen = this.published + 1n;
    this.published = revision;
    if (seen < compactRevision) {
      // history between what watchers were given and this revision was compacted before
      // this process saw it (another process compacted): catch-up cancels them as etcd
      // cancels a compacted watcher
      for (const w of this.synced) {
        // a watcher created for a future revision waits for it
        if (revision < w.nextRev) continue;
        const next = w.nextRev > seen ? w.nextRev : seen;
        if (next < compactRevision) this.fallBehind(w, next);
      }
    }
    // each group gathers its events of this revision, in order, then its watchers get them
    const touched: RangeGroup[] = [];
    for (const ev of events) {
      this.index.holding(keyString(ev.kv.key), (group) => {
        if (group.matched.length === 0) touched.push(group);
        group.matched.push(ev);
      });
    }
    // one header for every response of the revision, one next revision for every watcher
    const header = { revision };
    const next = revision + 1n;
    // the events as each shape of watcher gets them, made once per group: every watcher of
    // a shape is handed the same list, so its encoding is shared too (watch-encoding.ts)
    const shaped: Array<Event[] | undefined> = new Array(SHAPES);
    for (const group of touched) {
      const matched = group.matched;
      group.matched = [];
      shaped.fill(undefined);
      for (const w of group.watchers) {
        if (revision < w.nextRev) continue;
        if (w.sink.congested()) {
          // leave the events in the history; the watcher reads them when its client catches up
          this.fallBehind(w, revision);
          continue;
        }
        w.nextRev = next;
        const evs = (shaped[w.shapeIndex] ??= w.shape(matched));
        if (evs.length === 0) continue;
        // a watcher that heard nothing since the last tick gets the next progress notification
        if (w.sink.send({ header, watchId: w.id, events: evs }) !== false) w.sentSinceTick = true;
      }
    }
    if (this.tickAt !== undefined && revision >= this.tickAt) this.notifyProgress(revision);
  }

  /** A synced watcher that still needs revision `next` (or its own later start) goes back to catching up. */
  private fallBehind(w: Watcher, next: Rev): void {
    if (w.nextRev < next) w.nextRev = next;
    this.leave(w);
    this.unsync(w);
  }

  private join(w: Watcher): void {
    this.synced.add(w);
    const id = w.rangeId;
    let group = this.groups.get(id);
    if (!group) {
      this.groups.set(id, (group = { range: w.range, watchers: new Set(), matched: [] }));
      this.index.set(w.range, group);
    }
    group.watchers.add(w);
  }

  private leave(w: Watcher): void {
    if (!this.synced.delete(w)) return;
    const id = w.rangeId;
    const group = this.groups.get(id);
    if (!group) return;
    group.watchers.delete(w);
    if (group.watchers.size === 0) {
      this.groups.delete(id);
      this.index.delete(group.range);
    }
  }

  /**
   * Sends a progress notification to each synced watcher that asked and heard nothing
   * since the last tick. A notification vouches for every revision up to the one it
   * reports and must not report less than a write already acknowledged, so while the
   * merged order lags behind one the tick waits for it to be published.
   */
  progressTick(): void {
    const { revision, latest } = this.revisions();
    if (latest > revision) {
      this.tickAt = latest;
      return;
    }
    this.notifyProgress(revision);
  }

  private notifyProgress(revision: Rev): void {
    this.tickAt = undefined;
    for (const w of this.synced) {
      if (w.opts.progressNotify && !w.sentSinceTick && !w.sink.congested()) {
        w.sink.send({ header: { revision }, watchId: w.id, events: [] });
      }
      w.sentSinceTick = false;
    }
  }

  private unsync(w: Watcher): void {
    if (this.unsynced.has(w)) return;
    this.unsynced.add(w);
    void this.catchUp(w);
  }

  /** Brings one watcher up to the published revision page by page, then makes it synced. */
  private async catchUp(w: Watcher): Promise<void> {
    while (!w.closed) {
      try {
        if (w.sink.congested()) await w.sink.drained();
        else if (await this.catchUpStep(w)) return;
      } catch (err) {
        log("error", "watch catch-up failed", { error: String(err) });
        // the backend may be back by then
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
  }

  /** The history a watcher needs is gone: cancel it as etcd does, naming the compaction. */
  private cancelCompacted(w: Watcher, compactRevision: Rev): void {
    this.unsynced.delete(w);
    w.closed = true;
    w.sink.send({ header: { revision: 0n }, watchId: w.id, canceled: true, compactRevision, events: [] });
  }

  /** Sends w one page of its history; true once it is synced or cancelled. */
  private async catchUpStep(w: Watcher): Promise<boolean> {
    const { revision, compactRevision } = this.revisions();
    if (w.nextRev < compactRevision) {
      this.cancelCompacted(w, compactRevision);
      return true;
    }
    if (w.nextRev <= revision) {
      const from = w.nextRev;
      const page = await this.pages.read(w.range, w.rangeId, from, revision, w.opts.prevKv);
      if (w.closed) return true;
      // compacted before or during the read (perhaps by another process): part of the
      // history may be missing, so the watcher is cancelled rather than given a gap
      const now = this.revisions().compactRevision;
      const compacted = page.compactRevision > now ? page.compactRevision : now;
      if (from < compacted) {
        this.cancelCompacted(w, compacted);
        return true;
      }
      // its client stopped reading while the page was read (other watchers of its stream
      // filled the queue): the queue stays bounded, and the page is read again later
      if (w.sink.congested()) return false;
      const evs = w.shape(page.events);
      if (evs.length > 0) {
        if (w.sink.send({ header: { revision: this.revisions().revision }, watchId: w.id, events: evs }) !== false) w.sentSinceTick = true;
      }
      w.nextRev = page.through + 1n;
    }
    // joining the synced set happens in the same tick as the check, so no revision slips between
    if (w.nextRev > this.revisions().revision) {
      this.unsynced.delete(w);
      this.join(w);
      return true;
    }
    return false;
  }
}
