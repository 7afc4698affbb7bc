// A small seeded random generator (mulberry32), so a randomized test's failure repeats.
export function prng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    int,
    chance: (p: number) => next() < p,
    pick: <T>(xs: T[]) => xs[int(xs.length)]!,
    bytes: (max: number) => new Uint8Array(int(max + 1)).map(() => int(256)),
  };
}

export type Rng = ReturnType<typeof prng>;
