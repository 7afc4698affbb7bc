// Counts of large ranges kept current from the store's own commits. etcd answers every
// Range with the count of all keys in it, so the first page of a list counts the whole
// range: at 300,000 keys counting took most of that page's time. A count the database
// made is remembered with its revision, and each revision the store publishes moves it:
// a key created in the range (version 1) adds one, a deletion in it takes one away;
// updates change nothing. A read at the revision a count holds at needs no counting.
// The store keeps them only while it sees every change as events (see Store): commits of
// other processes, and writes placed without events (moves between backends), drop them.
//
// A keyspace known to be empty (count-warmup.ts finds no key when a store opens) has every
// count known from then on: the '/'-ended prefixes of each key created ("/registry/",
// "/registry/pods/", "/registry/pods/ns/", up to PREFIX_SLASHES slashes) are counted from
// its events, so a list of such a prefix never counts, however it grew (a fresh cluster,
// or a bulk load into a fresh server). A prefix without an entry holds no key.
import { inRange, isSingleKey, keyString, rangeString } from "./keyrange.ts";
import type { KnownCount } from "./page-counts.ts";
import { DELETE, type Event, type KeyRange, type Rev } from "./types.ts";

/**
 * ranges kept at once: each costs a comparison or two per created or deleted key (well
 * under a microsecond), and a start counts every large prefix (count-warmup.ts)
 */
export const KEPT = 64;
/** a smaller count costs the database less than keeping it costs every write */
export const WORTH_KEEPING = 1_000n;
/** the '/'-ended prefixes of a key counted from empty: "/", "/registry/", "/registry/pods/", "/registry/pods/ns/" */
export const PREFIX_SLASHES = 4;
/** prefixes counted from empty at most (keys of arbitrary bytes can hold many); past it they are dropped */
export const PREFIXES = 10_000;
const SLASH = 0x2f;

interface Kept {
  range: KeyRange;
  count: bigint;
}

export class LiveCounts {
  private readonly kept = new Map<string, Kept>();
  /** the revision every kept count holds at */
  private revision: Rev = -1n;
  /** live keys under each '/'-ended prefix, while counted from an empty keyspace */
  private prefixes: Map<string, number> | undefined;
  /** the '/'-ended prefixes of the key counted last, as bytes and as strings */
  private lastPrefixes: { bytes: Uint8Array; strings: string[] } | undefined;

  /** the count of exactly this range at the newest published revision, if kept */
  get(range: KeyRange): KnownCount | undefined {
    // most reads are of one key: none is kept, and making the map's key would cost them
    if ((this.kept.size === 0 && !this.prefixes) || isSingleKey(range)) return undefined;
    const prefix = this.prefixes && countedPrefix(range);
    if (prefix !== undefined) return { revision: this.revision, count: BigInt(this.prefixes!.get(prefix) ?? 0) };
    const k = this.kept.get(rangeString(range));
    return k ? { revision: this.revision, count: k.count } : undefined;
  }

  /** The keyspace held no key at `revision`: counted from empty when that is the newest published. */
  startEmpty(revision: Rev): void {
    if (revision === this.revision) this.prefixes ??= new Map();
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
    if (this.kept.size === 0 && !this.prefixes) return;
    for (const e of events) {
      // an update of a live key leaves every count as it was
      const delta = e.type === DELETE ? -1n : e.kv.version === 1n ? 1n : 0n;
      if (delta === 0n) continue;
      for (const k of this.kept.values()) if (inRange(k.range, e.kv.key)) k.count += delta;
      if (this.prefixes) this.countPrefixes(e.kv.key, delta > 0n ? 1 : -1);
    }
  }

  private countPrefixes(key: Uint8Array, delta: number): void {
    const prefixes = this.prefixes!;
    let last = -1;
    for (let i = 0, slashes = 0; i < key.length && slashes < PREFIX_SLASHES; i++) {
      if (key[i] !== SLASH) continue;
      last = i;
      slashes++;
    }
    if (last < 0) return;
    // the keys of a batch mostly share their prefixes: the strings made for the key before
    // are taken again (making them was most of the cost), and are already hashed
    if (!this.samePrefixes(key, last + 1)) {
      const whole = keyString(key.subarray(0, last + 1));
      const strings: string[] = [];
      for (let i = 0; i <= last; i++) if (key[i] === SLASH) strings.push(i === last ? whole : whole.slice(0, i + 1));
      this.lastPrefixes = { bytes: key.subarray(0, last + 1), strings };
    }
    for (const prefix of this.lastPrefixes!.strings) {
      const n = (prefixes.get(prefix) ?? 0) + delta;
      if (n === 0) prefixes.delete(prefix);
      else prefixes.set(prefix, n);
    }
    if (prefixes.size > PREFIXES) this.prefixes = undefined;
  }

  private samePrefixes(key: Uint8Array, length: number): boolean {
    const bytes = this.lastPrefixes?.bytes;
    if (bytes?.length !== length) return false;
    for (let i = length - 1; i >= 0; i--) if (bytes[i] !== key[i]) return false;
    return true;
  }

  /** A revision published whose changes are not all known as events: no count holds any more. */
  lost(revision: Rev): void {
    this.revision = revision;
    this.kept.clear();
    this.prefixes = undefined;
  }
}

/**
 * The prefix (as keyString) when the range is exactly the keys under a '/'-ended prefix of
 * at most PREFIX_SLASHES slashes: [P, P with its last byte '/' raised to '0').
 */
function countedPrefix(r: KeyRange): string | undefined {
  const { start, end } = r;
  const n = start.length;
  if (n === 0 || start[n - 1] !== SLASH || end === undefined || end.length !== n || end[n - 1] !== SLASH + 1) return undefined;
  let slashes = 0;
  for (let i = 0; i < n - 1; i++) {
    if (start[i] !== end[i]) return undefined;
    if (start[i] === SLASH) slashes++;
  }
  return slashes < PREFIX_SLASHES ? keyString(start) : undefined;
}
