// A Range with label/field selectors (HariKube's storage-side filtering) answered by
// reading the range in pages at one revision and keeping what the selection keeps
// (src/selectors: matches, and what cannot be evaluated): over an upstream etcd, which
// reads the plain range, and over databases whose index only narrows the pages (the
// exact case never comes here: database.ts). `limit`, `more` and `count` count matches,
// as if the range held only them (`count`, as etcd's, before the revision window);
// revisions and the header are the plain range's. Memory holds one page plus the matches
// answered, except that a sort by anything but the key holds every match (etcd holds the
// whole range for that too).
import { create } from "@bufbuild/protobuf";
import { type RangeRequest, RangeRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Deadline } from "../mvcc/deadline.ts";
import { finishRange } from "../mvcc/range.ts";
import type { RangeOut } from "../mvcc/responses.ts";
import type { KeyValue, Rev } from "../mvcc/types.ts";
import { type CustomFieldLookup, type Selection, selects } from "../selectors/index.ts";
import type { Keyspace, PageReader } from "./contract.ts";

/** keys read per page: a few MiB of Kubernetes objects */
const PAGE = 256n;
/** a limit this large is none (as in mvcc/range.ts) */
const NO_LIMIT = 2n ** 31n;
const SORT_NONE = 0, SORT_ASCEND = 1, TARGET_KEY = 0;

/**
 * Over any keyspace: its plain range in pages. `custom`: custom resources' fields from
 * their CRDs; without it they are unknown (kept).
 */
export function selectedRange(member: Keyspace, r: RangeRequest, s: Selection, deadline?: Deadline, custom?: CustomFieldLookup): Promise<RangeOut> {
  return selectInPages(r, s, custom, async (from, revision, limit) => {
    const page = await member.range(create(RangeRequestSchema, { key: from, rangeEnd: r.rangeEnd, revision, limit, serializable: r.serializable }), { deadline });
    return { kvs: page.kvs, more: page.more, revision: page.header.revision };
  });
}

/** The matches of the pages `read` returns, answered as the Range asks. */
export async function selectInPages(r: RangeRequest, s: Selection, custom: CustomFieldLookup | undefined, read: PageReader): Promise<RangeOut> {
  // results come in key order: only another order needs every match before answering
  const sorted = r.sortTarget === TARGET_KEY ? r.sortOrder !== SORT_NONE && r.sortOrder !== SORT_ASCEND : true;
  const limit = r.limit > 0n && r.limit < NO_LIMIT ? Number(r.limit) : Infinity;
  // one match beyond the limit tells finishRange there are more
  const keep = r.countOnly ? 0 : sorted ? Infinity : limit + 1;
  const inWindow = (kv: KeyValue) =>
    (r.maxModRevision === 0n || kv.modRevision <= r.maxModRevision) && (r.minModRevision === 0n || kv.modRevision >= r.minModRevision) &&
    (r.maxCreateRevision === 0n || kv.createRevision <= r.maxCreateRevision) &&
    (r.minCreateRevision === 0n || kv.createRevision >= r.minCreateRevision);

  const kept: KeyValue[] = [];
  let count = 0n;
  let revision = r.revision;
  // every later page reads at the first one's revision: the one asked for, else the
  // latest when the first was read (a header reports the latest, not the one read at)
  let latest: Rev | undefined;
  let from = r.key;
  for (;;) {
    const page = await read(from, revision, PAGE);
    latest ??= page.revision;
    if (revision === 0n) revision = page.revision;
    for (const kv of page.kvs) {
      if (!selects(s, kv.value, custom)) continue;
      // etcd's count is the range's, before the revision window; here the range is the matches
      count++;
      if (kept.length < keep && inWindow(kv)) kept.push(kv);
    }
    const last = page.kvs.at(-1);
    if (!page.more || !last || r.rangeEnd.length === 0) break;
    from = new Uint8Array(last.key.length + 1);
    from.set(last.key);
  }
  // the window is applied; sort, limit with `more`, keys-only and count-only as etcd does
  return finishRange(r, { kvs: kept, count, revision: latest! });
}

