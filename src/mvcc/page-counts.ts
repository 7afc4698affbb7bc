// Counts carried from one page of a list to the next. A client paging through a range
// asks for [after-last-key, end) at the revision of the first page; the count of that is
// the previous page's count less the keys it returned, so the next page need not count
// again (counting is most of a page's work in a large range).
import { rangeString, successor } from "./keyrange.ts";
import type { KeyRange, Rev } from "./types.ts";

/** pages remembered at once (clients paging at the same time) */
const REMEMBERED = 64;

export interface KnownCount {
  /** the revision the count holds at */
  revision: Rev;
  count: bigint;
}

export class PageCounts {
  private readonly known = new Map<string, KnownCount>();

  get(range: KeyRange): KnownCount | undefined {
    return this.known.get(rangeString(range));
  }

  /**
   * After a page of `range` that answered `returned` keys up to `last` out of `count` at
   * `revision`: the next page starts after `last`, at the same revision, and counts the rest.
   */
  followPage(range: KeyRange, last: Uint8Array, returned: number, revision: Rev, count: bigint): void {
    this.set({ start: successor(last), end: range.end }, { revision, count: count - BigInt(returned) });
  }

  /** remembers the count of the next page's range */
  private set(next: KeyRange, known: KnownCount): void {
    const key = rangeString(next);
    this.known.delete(key);
    this.known.set(key, known);
    if (this.known.size > REMEMBERED) this.known.delete(this.known.keys().next().value!);
  }
}
