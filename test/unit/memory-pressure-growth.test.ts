// How far memory may grow before src/util/memory-pressure.ts forces a collection: below the
// ceiling a fixed step times the backoff; above it no backoff, and a step that grows with
// what the last collection left (a full collection costs in proportion to the live heap),
// but never above 32 MiB while less than 256 MiB was left (the stalled-read attacks).
import { expect, test } from "bun:test";
import { growthBeforeCollecting } from "../../src/util/memory-pressure.ts";

const MiB = 1024 * 1024;

test("below the ceiling: 64 MiB times the backoff", () => {
  expect(growthBeforeCollecting(200 * MiB, 150 * MiB, 1)).toBe(64 * MiB);
  expect(growthBeforeCollecting(300 * MiB, 150 * MiB, 4)).toBe(256 * MiB);
});

test("above the ceiling with less than 256 MiB left: 32 MiB, whatever the backoff", () => {
  expect(growthBeforeCollecting(340 * MiB, 104 * MiB, 8)).toBe(32 * MiB);
  expect(growthBeforeCollecting(350 * MiB, 234 * MiB, 32)).toBe(32 * MiB);
  expect(growthBeforeCollecting(350 * MiB, 256 * MiB, 1)).toBe(32 * MiB);
});

test("above the ceiling over a large live set: an eighth of what the last collection left", () => {
  expect(growthBeforeCollecting(500 * MiB, 448 * MiB, 1)).toBe(56 * MiB);
  expect(growthBeforeCollecting(1200 * MiB, 1024 * MiB, 32)).toBe(128 * MiB);
});
