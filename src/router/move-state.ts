// The router's side of a live move (move.ts runs the move itself). Until the move ends a
// database may hold copies of keys the rules in force give another one; reads and events
// show each database's own keys only (merged-reads.ts). While the fence is up, writes that
// may touch moving keys wait; a move begins once the reads and the compaction already
// under way, which look for no copies, are done.
import { EtcdError } from "../mvcc/errors.ts";
import { isEmptyRange, isSingleKey, keyString } from "../mvcc/keyrange.ts";
import type { KeyRange } from "../mvcc/types.ts";
import { rangePrefix } from "./range-prefix.ts";
import type { RoutingTable } from "./rules.ts";

interface Move {
  from: RoutingTable;
  to: RoutingTable;
  fence?: Promise<void>;
  done: Promise<void>;
  end: () => void;
}

export class MoveState {
  private move?: Move;
  /** writes not yet answered (a fence waits for those already routed) */
  private readonly inflight = new Set<Promise<unknown>>();
  /** merged reads under way (a move waits for those that may not filter copies) */
  private readonly reads = new Set<Promise<unknown>>();
  /** the compaction under way (a move reads history, so it waits for it) */
  private compacting: Promise<unknown> = Promise.resolve();

  get moving(): boolean {
    return this.move !== undefined;
  }

  /** Starts a move between the rules: compaction waits until it ends. */
  async begin(from: RoutingTable, to: RoutingTable): Promise<void> {
    if (this.move) throw new EtcdError("FailedPrecondition", "strata: a migration is already running");
    let end!: () => void;
    const done = new Promise<void>((r) => (end = r));
    this.move = { from, to, done, end };
    // reads begun before the move do not look for copies: they finish before any is made
    await Promise.allSettled([this.compacting, ...this.reads]);
  }

  /**
   * Holds back writes that may touch keys changing backend, then waits for the writes
   * already under way. Returns the function that lets the held writes go (routed by the
   * rules in force then).
   */
  async raiseFence(): Promise<() => void> {
    const m = this.move!;
    let release!: () => void;
    m.fence = new Promise<void>((r) => (release = r));
    await Promise.allSettled([...this.inflight]);
    return () => {
      m.fence = undefined;
      release();
    };
  }

  end(): void {
    const m = this.move;
    this.move = undefined;
    m?.end();
  }

  /** The fence a write over these ranges waits at: while it is up and the write may touch a moving key. */
  fenceFor(ranges: KeyRange[]): Promise<void> | undefined {
    const m = this.move;
    if (!m?.fence) return undefined;
    const touches = ranges.some((r) => {
      if (isEmptyRange(r)) return false;
      if (isSingleKey(r)) {
        const k = keyString(r.start);
        return m.from.route(k) !== m.to.route(k);
      }
      const p = rangePrefix(r), a = m.from.backendsFor(p), b = m.to.backendsFor(p);
      return !(a.length === 1 && b.length === 1 && a[0] === b[0]);
    });
    return touches ? m.fence : undefined;
  }

  /** Resolves once no move runs. */
  async idle(): Promise<void> {
    while (this.move) await this.move.done;
  }

  /** Tracks a write until it is answered. */
  writing<T>(p: Promise<T>): Promise<T> {
    return track(this.inflight, p);
  }

  /** Tracks a merged read until it is answered. */
  reading<T>(p: Promise<T>): Promise<T> {
    return track(this.reads, p);
  }

  /** Records a compaction a move must wait for. */
  compaction(p: Promise<unknown>): void {
    this.compacting = p.catch(() => undefined);
  }
}

/** Keeps p in the set until it settles. */
function track<T>(set: Set<Promise<unknown>>, p: Promise<T>): Promise<T> {
  set.add(p);
  const settled = () => set.delete(p);
  p.then(settled, settled);
  return p;
}
