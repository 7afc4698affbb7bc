// etcd 3.7's RangeStream over any Keyspace (the databases or an upstream etcd): the range
// read in pages at one revision — the first page's, as selected-range.ts pins it — each
// page handed on as a chunk before the next is read, so memory holds about one chunk
// whatever the range's size. Nothing is held between pages: compaction goes on, and a
// page whose revision was compacted meanwhile fails as a Range at it would (etcd's too).
//
// The answer is etcd's: chunks carry key-values only, and the last one also the header
// revision (the first page's), `more` and `count` — together what a Range of the whole
// answers. `count` costs no extra read: a page's count is its rest of the range's, so the
// last page's plus the key-values before it is the whole range's (the store remembers a
// page's count for the next one, mvcc/page-counts.ts). Pages start small, so the first
// chunk leaves at once, and grow (at most doubling) or shrink toward `chunkBytes`.
//
// With label/field selectors pages are read narrowed by the databases' selector index (or
// whole, from an upstream etcd) and filtered here (src/selectors), and
// `limit`, `more` and `count` count matches, as selected-range.ts answers a Range; with a
// limit the rest of the range is still read, for the count.
import { create } from "@bufbuild/protobuf";
import { type RangeRequest, RangeRequest_SortTarget, RangeRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { scanKvs } from "../mvcc/kv-encoding.ts";
import { successor } from "../mvcc/keyrange.ts";
import { finishRange } from "../mvcc/range.ts";
import type { RangeOut } from "../mvcc/responses.ts";
import type { KeyValue, Rev } from "../mvcc/types.ts";
import { type CustomFieldLookup, type Selection, selects } from "../selectors/index.ts";
import type { Keyspace, RangeChunk, RangeStreamOptions } from "./contract.ts";

/** keys in the first page: etcd's first chunk holds as many */
export const FIRST_PAGE = 10;
/** keys in a page at most, however small they are: bounds a page of unexpectedly large values */
export const MAX_PAGE = 10_000;
/** a limit this large is none (as in mvcc/range.ts) */
const NO_LIMIT = 2n ** 31n;
/** what a key-value costs beyond its key and value, roughly (revisions, version, lease, tags) */
const KV_OVERHEAD = 24;

/** `custom`: custom resources' fields from their CRDs (see selected-range.ts) */
export async function* streamRange(
  member: Keyspace,
  r: RangeRequest,
  s: Selection | undefined,
  o: RangeStreamOptions,
  custom?: CustomFieldLookup,
): AsyncGenerator<RangeChunk> {
  // where the keys are stored, a selection narrows the pages (the values are checked here)
  const narrowed = s && member.narrowedPages?.(r, s, o.deadline());
  const limit = r.limit > 0n && r.limit < NO_LIMIT ? Number(r.limit) : Infinity;
  // etcd sorts each chunk by a target asked for without an order (ascending, as Range does)
  const sortEach = r.sortTarget !== RangeRequest_SortTarget.KEY;
  let revision = r.revision;
  let headerRevision: Rev | undefined;
  let from = r.key;
  let pageKeys = FIRST_PAGE;
  /** key-values (or matches) answered so far, and matches counted */
  let sent = 0, matches = 0n;
  for (;;) {
    // past the limit a selection reads on only to count matches
    const asked = s ? pageKeys : Math.min(pageKeys, limit - sent);
    const page = narrowed ? narrowedPage(await narrowed(from, revision, BigInt(asked))) : await member.range(
      create(RangeRequestSchema, {
        key: from,
        rangeEnd: r.rangeEnd,
        revision,
        limit: BigInt(asked),
        // a selection needs the values to evaluate
        keysOnly: r.keysOnly && !s,
        serializable: r.serializable,
      }),
      // a selection reads the values, a chunk sorted here the objects
      { deadline: o.deadline(), encodedKvs: o.encodedKvs && !s && !sortEach },
    );
    // every later page reads at the first one's revision: the one asked for, else the
    // latest when the first was read (the header reports the latest, as a Range's does)
    headerRevision ??= page.header.revision;
    if (revision === 0n) revision = page.header.revision;
    const { read, lastKey, bytes } = pageOf(page);
    pageKeys = nextPageKeys(asked, read, bytes, o.chunkBytes);
    const rangeEnds = !page.more || !lastKey || r.rangeEnd.length === 0;

    if (s) {
      const kept: KeyValue[] = [];
      for (const kv of page.kvs) {
        if (!selects(s, kv.value, custom)) continue;
        matches++;
        if (sent < limit) {
          kept.push(r.keysOnly && kv.value.length ? { ...kv, value: new Uint8Array(0) } : kv);
          sent++;
        }
      }
      const end = rangeEnds ? { revision: headerRevision, more: matches > BigInt(sent), count: matches } : undefined;
      if (kept.length > 0 || end) yield { kvs: sortEach ? sortedByTarget(r, kept) : kept, end };
      if (end) return;
    } else {
      const before = sent;
      sent += read;
      const done = rangeEnds || sent >= limit;
      // the page's count is its rest of the range's: with what came before, the whole range's
      const end = done ? { revision: headerRevision, more: page.more, count: BigInt(before) + page.count } : undefined;
      yield { kvs: sortEach ? sortedByTarget(r, page.kvs) : page.kvs, encodedKvs: page.encodedKvs, end };
      if (done) return;
    }
    from = successor(lastKey!);
  }
}

/** a narrowed page as a Range answers it (only what the loop above reads of it) */
function narrowedPage(page: { kvs: KeyValue[]; more: boolean; revision: Rev }): RangeOut {
  return { header: { revision: page.revision }, kvs: page.kvs, more: page.more, count: 0n };
}

/** what a page read: its key-values, the last key (where the next page starts) and about how many bytes */
function pageOf(page: RangeOut): { read: number; lastKey: Uint8Array | undefined; bytes: number } {
  if (page.encodedKvs) {
    const { count, lastKey } = scanKvs(page.encodedKvs);
    return { read: count, lastKey, bytes: page.encodedKvs.length };
  }
  let bytes = 0;
  for (const kv of page.kvs) bytes += kv.key.length + kv.value.length + KV_OVERHEAD;
  // pages are read in key order (a chunk is sorted otherwise only once read)
  return { read: page.kvs.length, lastKey: page.kvs.at(-1)?.key, bytes };
}

/**
 * The next page's keys: as many as fill `target` bytes at this page's size per key, at
 * most twice as many as this page asked for (a page larger than the last ones is found
 * out one page late) and never more than MAX_PAGE.
 */
export function nextPageKeys(asked: number, read: number, bytes: number, target: number): number {
  const grown = Math.min(asked * 2, MAX_PAGE);
  if (read === 0 || bytes === 0) return grown;
  return Math.max(1, Math.min(grown, Math.floor((target * read) / bytes)));
}

/** a chunk sorted by the request's target, ascending, as etcd sorts each chunk */
function sortedByTarget(r: RangeRequest, kvs: KeyValue[]): KeyValue[] {
  const by = create(RangeRequestSchema, { sortTarget: r.sortTarget });
  return finishRange(by, { kvs, count: 0n, revision: 0n }).kvs;
}
