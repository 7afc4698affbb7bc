// Watch responses bounded in bytes, as etcd bounds its sends: a response larger than the
// stream's limit (max-request-bytes) is split between revisions, so a catch-up page never
// exceeds a client's receive limit (grpc-js: 4 MiB). A single revision larger than the
// limit is split only for a watcher that asked for fragments — every part but the last
// then says more follows, and the client joins them — and otherwise goes whole, as etcd
// sends it.
import type { Event, KeyValue } from "../mvcc/types.ts";
import type { WatchResponseOut } from "../keyspace/contract.ts";

/** header, ids and framing, roughly */
const RESPONSE_OVERHEAD = 64;

function kvSize(kv: KeyValue | undefined): number {
  return kv ? kv.key.length + kv.value.length + 40 : 0;
}

function eventSize(e: Event): number {
  return kvSize(e.kv) + kvSize(e.prevKv) + 8;
}

/** about the encoded size of a response */
export function responseSize(r: WatchResponseOut): number {
  let n = RESPONSE_OVERHEAD;
  for (const e of r.events) n += eventSize(e);
  return n;
}

/** The response as parts below about max bytes, in order (etcd's comparisons). */
export function* splitResponse(r: WatchResponseOut, max: number, fragment: boolean): Generator<WatchResponseOut> {
  if (responseSize(r) < max) return yield r;
  let part: Event[] = [];
  let size = RESPONSE_OVERHEAD;
  for (let i = 0; i < r.events.length;) {
    const revision = r.events[i]!.kv.modRevision;
    let end = i;
    let revisionSize = 0;
    while (end < r.events.length && r.events[end]!.kv.modRevision === revision) revisionSize += eventSize(r.events[end++]!);
    if (part.length > 0 && size + revisionSize >= max) {
      yield { ...r, events: part };
      part = [];
      size = RESPONSE_OVERHEAD;
    }
    if (fragment && RESPONSE_OVERHEAD + revisionSize >= max) {
      yield* fragments({ ...r, events: r.events.slice(i, end) }, max);
    } else {
      for (let k = i; k < end; k++) part.push(r.events[k]!);
      size += revisionSize;
    }
    i = end;
  }
  if (part.length > 0) yield { ...r, events: part };
}

/** One revision's events in parts below about max bytes (one event larger than max is a part alone), as etcd's sendFragments. */
function* fragments(r: WatchResponseOut, max: number): Generator<WatchResponseOut> {
  let part: Event[] = [];
  let size = RESPONSE_OVERHEAD;
  for (const e of r.events) {
    if (part.length > 0 && size + eventSize(e) >= max) {
      yield { ...r, events: part, fragment: true };
      part = [];
      size = RESPONSE_OVERHEAD;
    }
    part.push(e);
    size += eventSize(e);
  }
  yield { ...r, events: part, fragment: false };
}
