// Counts of the keyspace's large prefixes, made once when a store opens so that the first
// page of a large list need not count. etcd answers every page with the count of its whole
// range; later pages carry it (page-counts.ts) and a count once made is kept current from
// commits (live-counts.ts), but the first list of a resource after a start counted all of
// it: 26-127 ms for 240,000 pods, several times the rest of the page. Here the prefixes a
// list asks for ("/registry/pods/", "/registry/pods/ns/", "/registry/example.com/widgets/")
// are found by seeking from one to the next (one indexed read each) and counted through the
// store's own reads, which keep what they count like any other read. Only prefixes holding
// at least WORTH_KEEPING keys are looked into further, and a level whose keys hold no more
// '/' is left after a few of them, so the work is about one count of every key per level.
import { prefixEnd, successor } from "./keyrange.ts";
import { WORTH_KEEPING } from "./live-counts.ts";
import type { KeyRange, RangeQuery, RangeResult, Rev } from "./types.ts";

/** levels of '/'-ended prefixes looked into: "/registry/", "/registry/pods/", "/registry/pods/ns/" */
const DEPTH = 3;
/** keys with no further '/' met at one level before it is left (a cluster-scoped resource's objects) */
const LEAVES = 8;
/** reads at most, whatever the keyspace holds */
const READS = 2_000;
const SLASH = 0x2f;

/**
 * Counts the large prefixes through `read` (the store's, which keeps the counts); stops
 * when `stopped` says so. Best effort: a count that a write overtook is just not kept.
 */
export async function warmCounts(
  read: (q: RangeQuery) => Promise<RangeResult>,
  stopped: () => boolean,
  /** the keyspace held no key at this revision */
  empty: (revision: Rev) => void,
): Promise<void> {
  /** the range's first key, uncounted: one indexed read */
  const seek = (range: KeyRange) => read({ range, revision: 0n, limit: 1, countOnly: false, keysOnly: true, uncounted: true });
  const none = await seek({ start: new Uint8Array(0), end: undefined });
  if (none.kvs.length === 0) return empty(none.revision);
  let reads = 1;
  const more = () => !stopped() && reads++ < READS;
  const first = async (range: KeyRange) => (await seek(range)).kvs[0]?.key;
  const count = async (range: KeyRange) => (await read({ range, revision: 0n, limit: 0, countOnly: true, keysOnly: false })).count;

  /** the prefixes one '/' longer than `parent` (empty: the first level) */
  const visit = async (parent: Uint8Array, end: Uint8Array | undefined, depth: number): Promise<void> => {
    let from = parent;
    let leaves = 0;
    while (more()) {
      const key = await first({ start: from, end });
      if (!key) return;
      const slash = key.indexOf(SLASH, Math.max(parent.length, 1));
      if (slash < 0) {
        if (++leaves >= LEAVES) return;
        from = successor(key);
        continue;
      }
      const prefix = key.slice(0, slash + 1);
      const after = prefixEnd(prefix);
      if (more() && (await count({ start: prefix, end: after })) >= WORTH_KEEPING && depth < DEPTH) await visit(prefix, after, depth + 1);
      if (!after) return;
      from = after;
    }
  };
  await visit(new Uint8Array(0), undefined, 1);
}
