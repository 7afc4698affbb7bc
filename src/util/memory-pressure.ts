// Collects garbage when resident memory grows fast. JavaScriptCore (Bun) schedules its
// collections by heap allocation, and large buffers weigh little in that: with 1 MB values
// written at 100+ MB/s, dead buffers (request bodies, encoded responses) pile up to several
// hundred MB before a collection runs, though the live data is a few MB. In a pod with a
// memory limit that is an OOM kill. V8 (Deno) accounts for external memory itself; there
// this does nothing. Below that level, one collection once the process goes quiet after a
// burst (or after its start) gives back the burst's garbage, which JavaScriptCore would
// otherwise hold while nothing allocates (an idle server after a kube-apiserver load).
// After a longer quiet, what is kept only for speed is given back too (releaseMemoryWhenQuiet).
// What it watches is the memory a collection can give back, not all of RSS: see residentBytes.
import { readFileSync, readlinkSync } from "node:fs";

/** how often resident memory is looked at */
const CHECK_MS = 100;
/** below this a process is left to the runtime's own collections */
const FLOOR_BYTES = 192 * 1024 * 1024;
/** growth over the level the last collection left that makes one run now */
const GROWTH_BYTES = 64 * 1024 * 1024;
/** above the floor, a collection at least this often, so memory falls back once a burst is over */
const TIDY_MS = 2000;
/** at most this share of the time goes to collections run from here, while under the ceiling */
const MAX_SHARE = 0.2;
/** above this, a collection whenever memory grew half the growth (or CEILING_GROWTH_SHARE), whatever it costs (a pod's limit is near) */
const CEILING_BYTES = 320 * 1024 * 1024;
/**
 * Above the ceiling the growth is at least this share of what the last collection left: a
 * full collection costs in proportion to the live heap (0.6–0.9 ms a MiB), so a fixed
 * 32 MiB step over a large live set spends more and more time per byte freed (a server
 * under Bun's CPU profiler, 300+ MiB more live, collected every 0.6 s for 190-330 ms each).
 * Below 256 MiB left the step is 32 MiB as before: the attacks the ceiling bounds run there.
 */
const CEILING_GROWTH_SHARE = 1 / 8;
/**
 * While collections free little of what grew, the growth is live data (20,000 watch streams
 * hold several hundred MiB), which no collection gives back: the growth and the tidy interval
 * that make the next one run double, up to this factor, or else a full collection every
 * 32 MiB of live data makes growing it cost the square of its size. A collection that frees
 * most of what grew (dead buffers, what this is for) brings them back to their own. Above
 * CEILING_BYTES the growth does not back off: there dead buffers piling up while one
 * collection happened to free little (2,000 stalled reads of a 1.4 MB value) took strata
 * 330 MiB up on a busy machine.
 */
const MAX_BACKOFF = 32;

/** the whole process (every thread) using less than this share of one core is quiet */
const QUIET_CPU_SHARE = 0.05;
/** how long the process has been quiet before a quiet collection runs */
const QUIET_MS = 1000;
/** growth over the level the last collection left that a quiet process collects */
const QUIET_GROWTH_BYTES = 16 * 1024 * 1024;

/** A full collection now, on Bun (V8 accounts for external memory itself; there nothing). */
export function collectNow(): void {
  (globalThis as { Bun?: { gc(force: boolean): void } }).Bun?.gc(true);
}

/** dropped response bytes that make a collection run soon */
const DROPPED_BYTES = 16 * 1024 * 1024;
/** the longest a dropped response's budget share waits for its collection (else it is given back at once) */
const MAX_HOLD_MS = 200;
let dropped = 0;
let collectionDue = false;
/** what waits for the collection due, when it comes within MAX_HOLD_MS */
let holding: Array<() => void> | undefined;
let lastDroppedCollection = 0;
let lastDroppedTook = 0;

/**
 * Counts bytes that just became garbage: responses dropped with their streams (a client
 * that reset them, never gave window, or went away), and the copies a large answer was
 * made through (api/streaming.ts). Once 16 MiB piled up, a full
 * collection runs on a later turn of the event loop, after the handlers that still held
 * those bytes have unwound (a collection at the drop itself finds them alive). At most
 * MAX_SHARE of the time goes to these. On Deno (V8 counts external memory) nothing.
 */
export function droppedBytes(bytes: number): void {
  if (!(globalThis as { Bun?: unknown }).Bun) return;
  dropped += bytes;
  if (dropped < DROPPED_BYTES || collectionDue) return;
  collectionDue = true;
  const wait = Math.max(0, lastDroppedCollection + lastDroppedTook / MAX_SHARE - performance.now());
  const waiting: Array<() => void> = [];
  holding = wait <= MAX_HOLD_MS ? waiting : undefined;
  setTimeout(() => {
    collectionDue = false;
    holding = undefined;
    dropped = 0;
    const start = performance.now();
    collectNow();
    lastDroppedCollection = start;
    lastDroppedTook = performance.now() - start;
    for (const fn of waiting) fn();
  }, wait);
}

/**
 * Runs `fn` once the dropped bytes counted so far are collected, when that comes within
 * MAX_HOLD_MS; else at once. The response budget gives back a dropped response's share
 * through this: else the reads it makes room for bring their responses in on top of the
 * dropped ones before any collection ran, and 2,000 stalled reads of a 1.4 MB value held
 * two rounds of responses (290–345 MiB) on a busy machine. Held longer (a collection
 * deferred for its share of the time), the shares would keep other clients' reads waiting.
 */
export function whenDroppedCollected(fn: () => void): void {
  if (holding) holding.push(fn);
  else fn();
}

/** the executable's resident pages, as first read (counted with the anonymous ones) */
let executableBytes: number | undefined;

/**
 * Resident memory as this module weighs it: anonymous pages (heaps, buffers) and the
 * runtime's executable, from /proc/self. Other file pages are left out: the read threads
 * map the SQLite file (read-worker.ts), and its pages are the page cache's, shared and
 * dropped by the kernel when memory is short; no collection frees them, and counted they
 * made a 40 MB list look like growth to collect. Without /proc (macOS), the whole RSS.
 */
function residentBytes(): number {
  let status: string;
  try {
    status = readFileSync("/proc/self/status", "latin1");
    executableBytes ??= residentExecutableBytes();
  } catch {
    return process.memoryUsage.rss();
  }
  const anon = /RssAnon:\s+(\d+) kB/.exec(status);
  if (!anon) return process.memoryUsage.rss();
  return Number(anon[1]) * 1024 + executableBytes;
}

/**
 * The executable's pages in memory, from /proc/self/smaps (a millisecond, so once): the
 * same in every thread, where RssFile would take in whatever the other threads had mapped.
 */
function residentExecutableBytes(): number {
  const executable = readlinkSync("/proc/self/exe");
  let kib = 0;
  let its = false;
  for (const line of readFileSync("/proc/self/smaps", "latin1").split("\n")) {
    // a mapping's first line: addresses, permissions, offset, device, inode, path
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) its = line.endsWith(` ${executable}`);
    else if (its && line.startsWith("Rss:")) kib += Number(/\d+/.exec(line)?.[0] ?? 0);
  }
  return kib * 1024;
}

/** how far memory may grow over what the last collection left (`settled`) before one runs now, above the floor */
export function growthBeforeCollecting(resident: number, settled: number, backoff: number): number {
  if (resident < CEILING_BYTES) return GROWTH_BYTES * backoff;
  // above the ceiling no backoff: a pod's limit is near, whatever the growth is made of
  return Math.max(GROWTH_BYTES / 2, settled * CEILING_GROWTH_SHARE);
}

/** Starts watching (the timer does not keep the process alive). */
export function collectUnderMemoryPressure(): void {
  const collect = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun?.gc;
  if (!collect) return;
  let settled = residentBytes();
  let quietUntil = 0;
  let last = 0;
  let backoff = 1;
  const busy = busyMeter();
  let busyAt = performance.now();
  const timer = setInterval(() => {
    const resident = residentBytes();
    settled = Math.min(settled, resident);
    const now = performance.now();
    if (busy(now)) busyAt = now;
    if (now - busyAt >= QUIET_MS && resident >= settled + QUIET_GROWTH_BYTES) {
      collect(true);
      last = now;
      settled = residentBytes();
      return;
    }
    if (resident < FLOOR_BYTES || (now < quietUntil && resident < CEILING_BYTES)) return;
    const growth = growthBeforeCollecting(resident, settled, backoff);
    if (resident < settled + growth && now < last + TIDY_MS * backoff) return;
    collect(true);
    last = now;
    const took = performance.now() - now;
    quietUntil = now + took / MAX_SHARE;
    const after = residentBytes();
    const freedMost = resident - after > (resident - settled) / 2;
    backoff = freedMost ? 1 : Math.min(backoff * 2, MAX_BACKOFF);
    settled = after;
  }, CHECK_MS);
  timer.unref();
}

/** how long the process has been quiet before it gives back what it keeps for speed */
const RELEASE_AFTER_QUIET_MS = 30_000;
/**
 * how often the quiet is looked at for that: over a whole second, the few tens of
 * milliseconds a read or checkpoint thread takes to end (30 s after a load) stay quiet
 */
const RELEASE_CHECK_MS = 1000;
const releasers = new Set<() => void>();

/**
 * Registers a cache that refills on use (SQLite's page cache) to be emptied once the
 * process has been quiet a while; returns what takes it off again.
 */
export function releaseWhenQuiet(release: () => void): () => void {
  releasers.add(release);
  return () => void releasers.delete(release);
}

/**
 * Once the whole process has been quiet for `quietMs`, once per quiet spell: empties the
 * caches registered with releaseWhenQuiet and (on Bun) has JavaScriptCore throw away its
 * compiled code and collect (`Bun.shrink`). An idle server after a kube-apiserver load
 * held about 12 MiB of JIT code and heap that no plain collection gives back; the price
 * is paid by the next request burst, which compiles its hot code again. (`Bun.shrink` is
 * marked deprecated in Bun's types but present in 1.4.5; where it is gone, only the caches
 * are emptied.) Returns what stops it.
 */
export function releaseMemoryWhenQuiet(quietMs = RELEASE_AFTER_QUIET_MS, onRelease: () => void = () => {}): () => void {
  const shrink = (globalThis as { Bun?: { shrink?: () => void } }).Bun?.shrink;
  const busy = busyMeter();
  let busyAt = performance.now();
  let released = false;
  /** the release's own work (run when this turn ends) is not the process getting busy again */
  let ownWorkUntil = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    if (busy(now) && now > ownWorkUntil) {
      busyAt = now;
      released = false;
    }
    if (released || now - busyAt < quietMs) return;
    released = true;
    for (const release of releasers) release();
    shrink?.();
    ownWorkUntil = now + 2 * RELEASE_CHECK_MS;
    onRelease();
  }, RELEASE_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Returns what tells, at each look, whether the whole process used more than
 * QUIET_CPU_SHARE of a core since the look before.
 */
function busyMeter(): (now: number) => boolean {
  let cpu = cpuMicros();
  let checked = performance.now();
  return (now) => {
    const used = cpuMicros();
    const busy = used - cpu > (now - checked) * 1000 * QUIET_CPU_SHARE;
    [cpu, checked] = [used, now];
    return busy;
  };
}

/** user and system CPU time of the whole process (every thread), microseconds */
function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}
