// Issue 13's list storm, scaled to run in CI: 50 concurrent full lists of 10,000 × 1 KiB
// keys while one client puts every 50 ms, on SQLite and on PostgreSQL. Reads run on worker
// threads (PostgreSQL's rows are parsed and encoded there too) and large responses are
// admitted against a memory budget, so the writer keeps answering and memory stays
// bounded. With SQLite a real etcd runs the same storm for comparison (printed, not
// asserted; skipped with STRATA_STORM_ETCD=0). STORM_LISTS and STORM_KEYS change the scale
// for measuring; STORM_ANY=1 runs it on the other backends too.
import { afterAll, expect, test } from "bun:test";
import { startEtcd } from "../support/etcd.ts";
import { listStorm, loadStorm, type StormSizes } from "../support/list-storm.ts";
import { BACKEND, startStrata } from "../support/strata.ts";

const SIZES: StormSizes = { keys: Number(process.env.STORM_KEYS ?? 10_000), valueBytes: 1024, lists: Number(process.env.STORM_LISTS ?? 50) };
/**
 * with reads on the event loop the worst put here took 1.4 s on SQLite, 1.0 s on PostgreSQL
 * (etcd's: about 0.2 s); now about 20–70 ms and 180 ms on a quiet machine, and 314 ms with
 * other engineers' builds and tests on both cores: the bound keeps the regression out, not
 * the machine's load
 */
const WORST_PUT_MS = 700;
/**
 * PostgreSQL: typically 77–195 ms, but one run in about six saw a put take 1.4 s (not
 * explained: the database's own checkpoint fsync is a candidate); bounded at 2 s, the
 * time strata gave a silent database before --request-timeout (7 s by default) existed
 */
const WORST_PUT_MS_SERVER = 2000;
/** 50 responses of 10 MiB: with every one in memory at once the peak was 1,050 MiB (etcd's: about 1,000); now about 450 */
const PEAK_RSS_MIB = 640;

const stops: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const stop of stops) await stop();
});

test.skipIf(BACKEND !== "sqlite" && BACKEND !== "postgres" && !process.env.STORM_ANY)("a list storm leaves writes flowing and memory bounded", async () => {
  const strata = await startStrata();
  stops.push(() => strata.stop());
  await loadStorm(strata.endpoint, SIZES);
  const s = await listStorm(strata.endpoint, SIZES);

  let e: Awaited<ReturnType<typeof listStorm>> | undefined;
  if (BACKEND === "sqlite" && process.env.STRATA_STORM_ETCD !== "0") {
    const etcd = await startEtcd();
    stops.push(() => etcd.stop());
    await loadStorm(etcd.endpoint, SIZES);
    e = await listStorm(etcd.endpoint, SIZES);
  }
  const row = (name: string, r: typeof s) =>
    `${name}: lists ${r.listSeconds.toFixed(1)} s, worst put ${r.worstPutMs.toFixed(0)} ms (${r.puts} puts), RSS before ${r.rssBeforeMiB.toFixed(0)} MiB, peak ${r.peakRssMiB.toFixed(0)} MiB`;
  console.log(`list storm, ${SIZES.lists} lists of ${SIZES.keys} × ${SIZES.valueBytes} B\n  ${row(`strata/${BACKEND}`, s)}${e ? `\n  ${row("etcd", e)}` : ""}`);

  expect(s.counts).toEqual(Array(SIZES.lists).fill(SIZES.keys));
  expect(s.puts).toBeGreaterThan(0);
  expect(s.worstPutMs).toBeLessThan(BACKEND === "sqlite" ? WORST_PUT_MS : WORST_PUT_MS_SERVER);
  expect(s.peakRssMiB).toBeLessThan(PEAK_RSS_MIB);
}, 120_000);
