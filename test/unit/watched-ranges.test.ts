// The index of watched ranges against a brute-force oracle: random ranges of every kind
// (single keys, prefixes, to the end of the keyspace, arbitrary intervals) over a small
// byte alphabet that includes 0x00 and 0xff, added and removed at random, and after each
// step the ranges holding random keys, compared with a look at every range.
import { expect, test } from "bun:test";
import { inRange, keyString, prefixEnd, rangeString, toKeyRange } from "../../src/mvcc/keyrange.ts";
import type { KeyRange } from "../../src/mvcc/types.ts";
import { WatchedRanges } from "../../src/keyspace/watched-ranges.ts";

const ALPHABET = [0x00, 0x01, 0x2f, 0x61, 0x62, 0x7f, 0x80, 0xfe, 0xff];
const EMPTY = new Uint8Array(0);
const END = new Uint8Array([0]);

function seededRandom(seed: number): (below: number) => number {
  let state = seed >>> 0;
  return (below) => {
    // xorshift32: reproducible, so a failure can be rerun
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state % below;
  };
}

function randomKey(random: (below: number) => number, min = 0): Uint8Array {
  return Uint8Array.from({ length: min + random(4) }, () => ALPHABET[random(ALPHABET.length)]!);
}

/** a range as a watch request makes one: key and range_end */
function randomRange(random: (below: number) => number): KeyRange {
  const key = randomKey(random, 1);
  switch (random(4)) {
    case 0:
      return toKeyRange(key, EMPTY);
    case 1: {
      const end = prefixEnd(key);
      return toKeyRange(key, end ?? END);
    }
    case 2:
      return toKeyRange(key, END);
    default: {
      const other = randomKey(random, 1);
      const [a, b] = keyString(key) < keyString(other) ? [key, other] : [other, key];
      // equal ends make an empty range, which a watch refuses: a single key instead
      return toKeyRange(a, keyString(a) === keyString(b) ? EMPTY : b);
    }
  }
}

for (const seed of [1, 2, 3, 42, 2026]) {
  test(`matches a look at every range (seed ${seed})`, () => {
    const random = seededRandom(seed);
    const index = new WatchedRanges<string>();
    const oracle = new Map<string, KeyRange>();
    const held: KeyRange[] = [];
    let matches = 0;
    for (let step = 0; step < 1500; step++) {
      if (held.length > 0 && random(3) === 0) {
        const [r] = held.splice(random(held.length), 1);
        index.delete(r!);
        oracle.delete(rangeString(r!));
      } else {
        const r = randomRange(random);
        const id = rangeString(r);
        if (!oracle.has(id)) held.push(r);
        oracle.set(id, r);
        index.set(r, id);
      }
      expect(index.size).toBe(oracle.size);
      for (let q = 0; q < 5; q++) {
        const key = randomKey(random, 1);
        const got: string[] = [];
        index.holding(keyString(key), (id) => got.push(id));
        const want = [...oracle].filter(([, r]) => inRange(r, key)).map(([id]) => id);
        expect(got.sort()).toEqual(want.sort());
        matches += want.length;
      }
    }
    // the keys and ranges met often enough for the comparison to mean something
    expect(matches).toBeGreaterThan(1000);
  });
}

test("a range added twice is held once, with its newer value, and removing it removes it", () => {
  const index = new WatchedRanges<number>();
  const prefix = toKeyRange(new TextEncoder().encode("/registry/pods/"), prefixEnd(new TextEncoder().encode("/registry/pods/"))!);
  index.set(prefix, 1);
  index.set(prefix, 2);
  const seen: number[] = [];
  index.holding("/registry/pods/default/a", (v) => seen.push(v));
  expect(seen).toEqual([2]);
  index.delete(prefix);
  index.holding("/registry/pods/default/a", (v) => seen.push(v));
  expect(seen).toEqual([2]);
  expect(index.size).toBe(0);
});
