// Reads that span databases, at one revision. A range raises every database it reads to
// the newest revision any has published (as etcd answers at its newest revision) and reads
// each there; history pages are cut at the lowest revision every database reached, so no
// revision is returned in part. During a move each database shows only the keys the rules
// in force give it. The results are raw (mvcc/range.ts finishes a range once, above).
import type { EventsOptions, EventsPage } from "../mvcc/backend.ts";
import type { Deadline } from "../mvcc/deadline.ts";
import { compareBytes, keyString } from "../mvcc/keyrange.ts";
import type { PageCounts } from "../mvcc/page-counts.ts";
import { checkRevision } from "../mvcc/revisions.ts";
import type { Event, RangeQuery, RangeResult, Rev } from "../mvcc/types.ts";
import type { Part } from "./part.ts";
import type { RoutingTable } from "./rules.ts";

/** what merged reads need from the router */
export interface ReadContext {
  /** the rules in force */
  readonly routing: RoutingTable;
  readonly moving: boolean;
  readonly compactRevision: Rev;
  /** raises the databases to one revision; returns it */
  closeAll(parts: Part[]): Promise<Rev>;
  /** counts carried from one page of a merged range to the next */
  readonly pageCounts: PageCounts;
}

/** A range over several databases. */
export async function mergedRange(ctx: ReadContext, parts: Part[], q: RangeQuery, deadline?: Deadline): Promise<RangeResult> {
  const current = await ctx.closeAll(parts);
  const at = checkRevision(q.revision, current, ctx.compactRevision);
  if (ctx.moving) return rangeOwned(ctx, parts, { ...q, revision: at }, current);
  // a range within one database needs no merging: its read may come back encoded
  if (parts.length === 1) return { ...(await parts[0]!.store.read({ ...q, revision: at }, deadline)), revision: current };
  // a page of a paged list: its count is the previous page's less what that returned, so
  // no database counts its part again (their own page counts follow their own last keys)
  const paged = q.limit > 0 && !q.select && !q.uncounted;
  const known = paged ? ctx.pageCounts.get(q.range) : undefined;
  const carried = known?.revision === at ? known.count : undefined;
  // each database returns its first limit+1 keys: enough to fill the merged page and tell "more"
  const outs = await Promise.all(parts.map((p) => p.store.read({ ...q, revision: at, encode: undefined, uncounted: q.uncounted || carried !== undefined }, deadline)));
  const kvs = outs.flatMap((o) => o.kvs).sort((a, b) => compareBytes(a.key, b.key));
  const count = carried ?? outs.reduce((n, o) => n + o.count, 0n);
  // the page answers limit-1 keys (the one more tells "more"); the next starts after them
  const last = paged && kvs.length >= q.limit ? kvs[q.limit - 2]?.key : undefined;
  if (last) ctx.pageCounts.followPage(q.range, last, q.limit - 1, at, count);
  return { kvs, count, revision: current, selected: selectedAll(outs) };
}

/** how a selection was applied to all the reads: exactly only if exactly in each */
function selectedAll(outs: RangeResult[]): RangeResult["selected"] {
  if (outs.every((o) => o.selected === "exact")) return "exact";
  return outs.every((o) => o.selected !== undefined) ? "superset" : undefined;
}

/**
 * A merged range during a move: each database's keys are filtered to the ones it owns
 * before limits and counts apply, so every database is read in full (moves are short).
 */
async function rangeOwned(ctx: ReadContext, parts: Part[], q: RangeQuery, current: Rev): Promise<RangeResult> {
  const all: RangeQuery = { ...q, limit: 0, countOnly: false, keysOnly: q.countOnly || q.keysOnly, encode: undefined };
  const { table, results } = await underOneTable(ctx, () => Promise.all(parts.map((p) => p.store.read(all))));
  const kvs = results.flatMap((out, i) => out.kvs.filter((kv) => table.route(keyString(kv.key)) === parts[i]!.name));
  kvs.sort((a, b) => compareBytes(a.key, b.key));
  return { kvs, count: BigInt(kvs.length), revision: current, selected: selectedAll(results) };
}

/** History from every database, merged in revision order (for watchers catching up). */
export async function mergedEvents(ctx: ReadContext, parts: Part[], from: Rev, to: Rev, limit: number, opts?: EventsOptions): Promise<EventsPage> {
  const { table, results: pages } = await underOneTable(ctx, () => Promise.all(parts.map((p) => p.backend.events(from, to, limit, opts))));
  const through = pages.reduce((a, p) => (p.through < a ? p.through : a), to);
  const events: Event[] = pages.flatMap((p, i) => {
    const upTo = p.events.filter((e) => e.kv.modRevision <= through);
    return ctx.moving ? owned(table, parts[i]!, upTo) : upTo;
  });
  events.sort((a, b) => (a.kv.modRevision < b.kv.modRevision ? -1 : a.kv.modRevision > b.kv.modRevision ? 1 : 0));
  const compactRevision = pages.reduce((a, p) => (p.compactRevision > a ? p.compactRevision : a), 0n);
  return { events, through, compactRevision };
}

/** the events that are p's to show: keys the rules give to p */
export function owned(table: RoutingTable, p: Part, events: Event[]): Event[] {
  return events.filter((e) => table.route(keyString(e.kv.key)) === p.name);
}

/**
 * Runs reads until they all ran under the same rules: which copy of a moving key is
 * the real one changes when the rules switch, and a read from before the switch may
 * hold a copy that was brought up to date only at the switch.
 */
async function underOneTable<T>(ctx: ReadContext, read: () => Promise<T>): Promise<{ table: RoutingTable; results: T }> {
  for (;;) {
    const table = ctx.routing;
    const results = await read();
    if (ctx.routing === table) return { table, results };
  }
}
