// Counts of large ranges kept current from the store's own commits. etcd answers every
// Range with the count of all keys in it, so the first page of a list counts the whole
// range: at 300,000 keys counting took most of that page's time. A count the database
// made is remembered with its revision, and each revision the store publishes moves it:
// a key created in the range (version 1) adds one, a deletion in it takes one away;
// updates change nothing. A read at the revision a count holds at needs no counting.
// The store keeps them only while it sees every change as events (see Store): commits of
// other processes, and writes placed without events (moves between backends), drop them.
import { inRange, isSingleKey, rangeString } from "./keyrange.ts";
import type { KnownCount } from "./page-counts.ts";
import { DELETE, type Event, type KeyRange, type Rev } from "./types.ts";

/** ranges kept at once: each costs a comparison per created or deleted key */
const KEPT = 16;
/** a smaller count costs the database less than keeping it costs every write */
export const WORTH_KEEPING = 1_000n;

interface Kept {
  range: KeyRange;
  count: bigint;
}

export class LiveCounts {
  private readonly kept = new Map<string, Kept>();
  /** the revision every kept count holds at */
  private revision: Rev = -1n;

  /** the count of exactly this range at the newest published revision, if kept */
  get(range: KeyRange): KnownCount | undefined {
    // most reads are of one key: none is kept, and making the map's key would cost them
    if (this.kept.size === 0 || isSingleKey(range)) return undefined;
    const k = this.kept.get(rangeString(range));
    return k ? { revision: this.revision, count: k.count } : undefined;
  }

  /**
   * A count the database made of `range` at `revision`. Kept when that is the newest
   * published revision (the counts move with commits from there) and the range is large.
   */
  learn(range: KeyRange, revision: Rev, count: bigint): void {
    if (revision !== this.revision || count < WORTH_KEEPING) return;
    const key = rangeString(range);
    this.kept.delete(key);
    this.kept.set(key, { range, count });
    if (this.kept.size > KEPT) this.kept.delete(this.kept.keys().next().value!);
  }

  /** A revision published with all its events: the counts move to it. */
  published(revision: Rev, events: Event[]): void {
    this.revision = revision;
    if (this.kept.size === 0) return;
    for (const e of events) {
      // an update of a live key leaves every count as it was
      const delta = e.type === DELETE ? -1n : e.kv.version === 1n ? 1n : 0n;
      if (delta === 0n) continue;
      for (const k of this.kept.values()) if (inRange(k.range, e.kv.key)) k.count += delta;
    }
  }

  /** A revision published whose changes are not all known as events: no count holds any more. */
  lost(revision: Rev): void {
    this.revision = revision;
    this.kept.clear();
  }
}
