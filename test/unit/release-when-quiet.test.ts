// What a quiet process gives back (src/util/memory-pressure.ts releaseMemoryWhenQuiet):
// the registered caches are emptied once per quiet spell, not again while it stays quiet,
// and again after the process was busy and went quiet once more.
import { expect, test } from "bun:test";
import { releaseMemoryWhenQuiet, releaseWhenQuiet } from "../../src/util/memory-pressure.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** keeps a core busy for `ms` */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

test("a quiet process empties its caches once per quiet spell", async () => {
  let cacheReleases = 0;
  let releases = 0;
  const unregister = releaseWhenQuiet(() => cacheReleases++);
  const stop = releaseMemoryWhenQuiet(300, () => releases++);
  try {
    // quiet for 300 ms: waited for up to 30 s, however busy the machine
    for (let i = 0; i < 300 && releases === 0; i++) await sleep(100);
    expect(releases).toBe(1);
    expect(cacheReleases).toBe(1);
    // still quiet: nothing more, even after several times the quiet period
    await sleep(1500);
    expect(releases).toBe(1);
    expect(cacheReleases).toBe(1);
    // busy, then quiet again: released again
    const before = releases;
    busy(600);
    for (let i = 0; i < 300 && releases === before; i++) await sleep(100);
    expect(releases).toBe(before + 1);
    expect(cacheReleases).toBe(releases);
  } finally {
    stop();
    unregister();
  }
  // taken off the list: a later release does not call it
  const stop2 = releaseMemoryWhenQuiet(100, () => releases++);
  const seen = releases;
  for (let i = 0; i < 300 && releases === seen; i++) await sleep(100);
  stop2();
  expect(cacheReleases).toBe(seen);
}, 120_000);
