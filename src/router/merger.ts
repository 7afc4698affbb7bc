// Merges the commit streams of several backends into one revision order. Each backend
// numbers its own commits (from disjoint residues, so revisions never collide); a
// backend's revision is *closed* up to the last one it published, because its next
// commit is numbered above that. Commits are released once every backend is closed at
// their revision, so watchers see one order with no gaps. A backend that lags while
// others have commits waiting is advanced (a write that only raises its revision).
import type { Committed } from "../mvcc/store.ts";
import type { Event, Rev } from "../mvcc/types.ts";

export class CommitMerger {
  /** the merged, closed revision: everything at or below it has been released */
  revision: Rev;
  private readonly known: Rev[];
  private readonly waiting: Committed[][];
  private readonly listeners: Array<(c: Committed) => void> = [];

  constructor(
    initial: Rev[],
    /** asks backend i to raise its revision to at least target */
    private readonly advance: (i: number, target: Rev) => void,
  ) {
    this.known = [...initial];
    this.waiting = initial.map(() => []);
    this.revision = min(initial);
  }

  onRelease(fn: (c: Committed) => void): void {
    this.listeners.push(fn);
  }

  /** the newest revision any backend has published */
  get newest(): Rev {
    return this.known.reduce((a, b) => (b > a ? b : a), 0n);
  }

  knownOf(i: number): Rev {
    return this.known[i]!;
  }

  /** Backend i published revision c.revision (commits arrive per backend in order). */
  commit(i: number, c: Committed): void {
    if (c.revision <= this.known[i]!) return;
    this.known[i] = c.revision;
    if (c.events.length > 0) this.waiting[i]!.push(c);
    this.release();
  }

  private release(): void {
    const closed = min(this.known);
    for (;;) {
      let next: Rev | undefined;
      for (const q of this.waiting) if (q.length > 0 && (next === undefined || q[0]!.revision < next)) next = q[0]!.revision;
      if (next === undefined || next > closed) break;
      const events: Event[] = [];
      for (const q of this.waiting) if (q.length > 0 && q[0]!.revision === next) events.push(...q.shift()!.events);
      this.announce({ revision: next, events });
    }
    if (closed > this.revision) this.announce({ revision: closed, events: [] });
    if (this.waiting.some((q) => q.length > 0)) {
      const target = this.newest;
      this.known.forEach((k, i) => k < target && this.advance(i, target));
    }
  }

  private announce(c: Committed): void {
    this.revision = c.revision;
    for (const l of this.listeners) l(c);
  }
}

/** with no database backends (an upstream etcd only) nothing is merged: 0 */
function min(xs: Rev[]): Rev {
  return xs.length === 0 ? 0n : xs.reduce((a, b) => (b < a ? b : a));
}
