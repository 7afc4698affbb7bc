// etcd's own Go client — clientv3 on grpc-go, what kube-apiserver links — against strata on
// the backend under test. grpc-go does what the JavaScript clients never do: its BDP
// estimator raises SETTINGS_INITIAL_WINDOW_SIZE mid-connection after big responses, and a
// server that does not apply the raise to open streams leaves a watch stalled for good
// after ~64 KiB (issue 12). Only the real client shows whether an apiserver's watch keeps
// flowing. On sqlite the apiserver scenario also runs against a real etcd, so a broken
// program is told apart from a broken server. The scenarios live in test/go/src/strata-gotest.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { etcdVersion, startEtcd } from "../support/etcd.ts";
import { type ApiserverReport, goProgram, runGoScenario, type StalledReport, type WatchReport } from "../support/go-client.ts";
import { BACKEND, startStrata, type StrataProcess } from "../support/strata.ts";

// etcd before 3.4.25 / 3.5.8 itself sends progress responses ahead of events (etcd issue
// 15220): over such an etcd, directly or upstream of strata, progress order is not checked
const [major, minor, patch] = etcdVersion();
const etcdOvertakes = major === 3 && ((minor === 4 && patch < 25) || (minor === 5 && patch < 8) || minor < 4);

let strata: StrataProcess;
beforeAll(async () => {
  await goProgram(); // built (or found in the cache) before any server runs
  // a short interval, so the watch's WithProgressNotify is exercised too
  strata = await startStrata(["--watch-progress-notify-interval", "1s"]);
}, 300_000);
afterAll(async () => {
  await strata?.stop();
});

/** the figures a failure should show at once, not one assertion at a time */
function watchFigures(r: WatchReport) {
  return {
    errors: r.errors,
    watchEnded: r.watchEnded ?? null,
    receivedEvents: r.receivedEvents,
    missingEvents: r.missingEvents,
    firstMissingRevision: r.firstMissingRevision ?? null,
    unexpectedEvents: r.unexpectedEvents,
    wrongEvents: r.wrongEvents,
    duplicates: r.duplicates,
    outOfOrder: r.outOfOrder,
    missingPrevKv: r.missingPrevKv,
    wrongPrevKv: r.wrongPrevKv,
  };
}

const healthyWatch = (expectedEvents: number) => ({
  errors: [],
  watchEnded: null,
  receivedEvents: expectedEvents,
  missingEvents: 0,
  firstMissingRevision: null,
  unexpectedEvents: 0,
  wrongEvents: 0,
  duplicates: 0,
  outOfOrder: 0,
  missingPrevKv: 0,
  wrongPrevKv: 0,
});

function checkApiserver(server: string, r: ApiserverReport, progressOrder: boolean): void {
  console.log(`apiserver scenario on ${server}: ${JSON.stringify(r)}`);
  // what strata said about a failed list (its log), next to the client's words
  if (r.listErrors.length > 0 && server.startsWith("strata")) console.log(`strata's log:\n${strata.stderr().slice(-4000)}`);
  // 3,000 creates + 1,000 updates + 1,000 deletes
  expect(r.expectedEvents).toBe(5000);
  expect({ ...watchFigures(r), listErrors: r.listErrors }).toEqual({ ...healthyWatch(5000), listErrors: [] });
  expect(r.lists).toBeGreaterThan(0);
  // the progress requests on the watch stream were answered
  expect(r.progressResponses).toBeGreaterThan(0);
  if (progressOrder) {
    expect({ progressBelowEvent: r.progressBelowEvent, eventBelowProgress: r.eventBelowProgress }).toEqual({
      progressBelowEvent: 0,
      eventBelowProgress: 0,
    });
  }
  expect(r.maxRequestMs).toBeLessThan(2000);
}

test("kube-apiserver's pattern on one clientv3 connection: the watch gets all 5,000 events", async () => {
  const r = await runGoScenario<ApiserverReport>(["apiserver", strata.endpoint]);
  checkApiserver(`strata (${BACKEND})`, r, !(BACKEND === "etcd" && etcdOvertakes));
}, 120_000);

// issue 17: a watcher that stops reading must not hold up another's events
const STALLED = [[100_000, 400], [1_000_000, 80]] as const;

async function checkStalled(server: string, endpoint: string, valueBytes: number, puts: number): Promise<void> {
  const r = await runGoScenario<StalledReport>(["stalled", endpoint, String(valueBytes), String(puts)]);
  console.log(`stalled-neighbour scenario on ${server}: ${JSON.stringify(r)}`);
  expect(r.expectedEvents).toBe(puts);
  // the program waits at most 10 s after the last put for the events
  expect(watchFigures(r)).toEqual(healthyWatch(puts));
  // a put of 1 MB taking seconds means the stalled stream holds up the writers
  expect(r.maxRequestMs).toBeLessThan(2000);
}

for (const [valueBytes, puts] of STALLED) {
  test(`a stalled watch stream beside a healthy clientv3 watcher: ${puts} puts of ${valueBytes / 1000} kB`, async () => {
    await checkStalled(`strata (${BACKEND})`, strata.endpoint, valueBytes, puts);
  }, 120_000);
}

// the control: the same programs against a real etcd must pass, or a program is wrong
test.skipIf(BACKEND !== "sqlite")("control: the scenarios pass against a real etcd", async () => {
  const etcd = await startEtcd(["--experimental-watch-progress-notify-interval", "1s"]);
  try {
    checkApiserver("etcd", await runGoScenario<ApiserverReport>(["apiserver", etcd.endpoint]), !etcdOvertakes);
    for (const [valueBytes, puts] of STALLED) await checkStalled("etcd", etcd.endpoint, valueBytes, puts);
  } finally {
    await etcd.stop();
  }
}, 120_000);
