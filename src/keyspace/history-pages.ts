// History pages for watchers catching up. Each lagging watcher catches up on its own
// (src/keyspace/watch-hub.ts) and reads its pages here: a page holds only the watcher's
// range, ends after about PAGE_BYTES, and reads previous versions only when asked.
// Watchers of one range lagging from the same revision share one read, and at most READS
// reads run at once, so the memory pages hold stays bounded however many watchers lag.
// A read waits only for other reads, never for a client.
import type { EventsPage, HistoryView } from "../mvcc/backend.ts";
import type { KeyRange, Rev } from "../mvcc/types.ts";

/** a page ends after about this many bytes of keys and values… */
const PAGE_BYTES = 1024 * 1024;
/** …or this many events */
const PAGE_EVENTS = 1000;
/** history reads for catch-up running at once */
const READS = 4;

export class HistoryPages {
  /** reads under way, by range, first revision and whether they carry previous versions */
  private readonly reading = new Map<string, Promise<EventsPage>>();
  private running = 0;
  private readonly queued: Array<() => void> = [];

  constructor(private readonly history: Pick<HistoryView, "events">) {}

  /**
   * The events of `range` from revision `from` on (up to `to` at most), with previous
   * versions if asked. `rangeId`: the range's rangeString, which its watcher keeps.
   */
  read(range: KeyRange, rangeId: string, from: Rev, to: Rev, prevKv: boolean): Promise<EventsPage> {
    const id = `${rangeId}\u0001${from}\u0001`;
    // a page with previous versions serves a watcher that wants none as well
    const shared = this.reading.get(`${id}true`) ?? (prevKv ? undefined : this.reading.get(`${id}false`));
    if (shared) return shared;
    const key = `${id}${prevKv}`;
    const page = this.limited(() => this.history.events(from, to, PAGE_EVENTS, { range, bytes: PAGE_BYTES, prevKv }));
    this.reading.set(key, page);
    const done = () => void this.reading.delete(key);
    page.then(done, done);
    return page;
  }

  /** Runs read once fewer than READS others run; slots pass on in arrival order. */
  private async limited<T>(read: () => Promise<T>): Promise<T> {
    if (this.running < READS) this.running++;
    else await new Promise<void>((resolve) => this.queued.push(resolve));
    try {
      return await read();
    } finally {
      const next = this.queued.shift();
      if (next) next();
      else this.running--;
    }
  }
}
