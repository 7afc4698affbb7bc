// The status page as a person sees it, in Debian's Chromium (headless): the topology,
// each backend's figures, charts that fill with data, and numbers that follow writes.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { type Browser, chromium, type Page } from "playwright-core";
import { gitCommit } from "../../build/build.ts";
import pkg from "../../package.json" with { type: "json" };
import { startStrata, type StrataProcess } from "../support/strata.ts";

const CHROMIUM = "/usr/bin/chromium";
const dir = mkdtempSync(join(tmpdir(), "strata-status-page-"));
let strata: StrataProcess;
let browser: Browser;

beforeAll(async () => {
  const config = join(dir, "strata.yaml");
  writeFileSync(config, [
    "backends:",
    `  main: sqlite://${join(dir, "main.db")}`,
    `  events: sqlite://${join(dir, "events.db")}`,
    "default: main",
    "routes:",
    "  - match: { resource: events }",
    "    backend: events",
  ].join("\n"));
  strata = await startStrata(["--config", config]);
  // as root, Chromium runs only without its sandbox
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await strata?.stop();
  // the screenshot stays for a person to look at; the databases go
  for (const f of ["main.db", "events.db"]) rmSync(join(dir, f), { force: true });
}, 60_000);

const cell = (page: Page, backend: string, column: string) => page.locator(`tr[data-backend="${backend}"] td.${column}`);

async function waitForText(page: Page, selector: string, want: string): Promise<void> {
  await page.waitForFunction(
    ([s, w]) => document.querySelector(s!)?.textContent === w,
    [selector, want] as const,
    { timeout: 20_000, polling: 250 },
  );
}

test("topology, backends, live charts; numbers follow more writes", async () => {
  const c = new Etcd3({ hosts: strata.endpoint });
  for (const n of ["a", "b", "c"]) await c.put(`/registry/pods/default/${n}`).value("v");
  for (const n of ["e1", "e2"]) await c.put(`/registry/events/default/${n}`).value("v");
  for (let i = 0; i < 20; i++) await c.get("/registry/pods/default/a").string();
  const watcher = await c.watch().prefix("/registry/pods/").create();

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${strata.metrics}/`);
  // the charts have data points: requests finished in an earlier second carry a latency
  await page.waitForSelector('#chart-rate:not([data-points="0"])', { timeout: 20_000 });
  await page.waitForSelector('#chart-latency:not([data-points="0"])', { timeout: 20_000 });
  await page.waitForSelector('#chart-watchers:not([data-points="0"])', { timeout: 20_000 });

  expect(await page.locator("tr[data-backend]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-backend")))).toEqual(["main", "events"]);
  expect(await page.locator('tr[data-backend="main"] .tag').textContent()).toBe("default");
  await waitForText(page, 'tr[data-backend="main"] td.keys', "3");
  await waitForText(page, 'tr[data-backend="events"] td.keys', "2");
  expect(await cell(page, "events", "health").textContent()).toContain("healthy");
  expect(await page.locator("#overall").textContent()).toBe("all backends healthy");
  expect(await page.locator('li[data-route="1"]').textContent()).toBe("1.resource: events\u2192events");
  expect(await page.locator('li[data-route="default"]').textContent()).toBe("any other key\u2192main (default)");
  await waitForText(page, "#watchers-now", "1");
  // the key prefix's live keys, over the backends its rules reach
  await waitForText(page, 'tr[data-prefix="/registry/"] td.keys', "5");
  expect(await page.locator('tr[data-prefix="/registry/"] td.backends').textContent()).toBe("events, main");

  // which strata: the version and the commit it was built from
  expect(await page.locator("#version").textContent()).toBe(pkg.version);
  expect(await page.locator("#commit").textContent()).toBe(gitCommit());
  // each SQLite database's size against etcd's default quota of 2 GiB
  for (const b of ["main", "events"]) expect(await cell(page, b, "quota").textContent()).toMatch(/^\d+(\.\d+)?% of 2\.00 GiB$/);
  expect(await page.locator("#nospace").isVisible()).toBe(false);

  // one revision on the page: the one clients are answered at, which follows each write at once
  expect(await page.locator("td.revision, td.compact").count()).toBe(0);
  expect(await page.getByText("Revision", { exact: true }).count()).toBe(0);
  for (const n of ["d", "e", "f", "g"]) await c.put(`/registry/pods/default/${n}`).value("v");
  const { header } = await c.put("/registry/pods/default/h").value("v").exec();
  await waitForText(page, "#revision", String(header!.revision));
  await waitForText(page, 'tr[data-backend="main"] td.keys', "8");
  await waitForText(page, 'tr[data-prefix="/registry/"] td.keys', "10");

  const shot = join(dir, "status-page.png");
  await page.screenshot({ path: shot, fullPage: true });
  expect(statSync(shot).size).toBeGreaterThan(10_000);
  console.log(`status page screenshot: ${shot}`);
  await watcher.cancel();
  c.close();
}, 90_000);

test("status.json: one revision, version and commit, each backend's health and quota", async () => {
  const st = (await (await fetch(`${strata.metrics}/status.json`)).json()) as Record<string, unknown> & { backends: Record<string, unknown>[] };
  expect(st).toMatchObject({ version: pkg.version, commit: gitCommit() });
  expect(BigInt(st.revision as string)).toBeGreaterThan(1n);
  expect(st.noSpace).toBeUndefined();
  for (const b of st.backends) {
    expect(b).toMatchObject({ healthy: true, quotaBytes: 2 * 1024 ** 3 });
    expect(b.sizeBytes as number).toBeGreaterThan(0);
    expect(b.revision).toBeUndefined();
    expect(b.compactRevision).toBeUndefined();
  }
});
