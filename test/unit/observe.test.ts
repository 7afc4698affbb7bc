import { afterEach, describe, expect, test } from "bun:test";
import { printable } from "../../src/api/accounting.ts";
import { loadConfig } from "../../src/config/config.ts";
import { Cached } from "../../src/observe/cached.ts";
import { log, setLogLevel } from "../../src/util/log.ts";
import { Observer } from "../../src/observe/observer.ts";
import { Timeline } from "../../src/observe/timeline.ts";

describe("observability settings", () => {
  test("defaults: metrics on etcd's kubeadm metrics port, info logs, 100ms slow threshold", () => {
    const c = loadConfig([], {});
    expect(c["metrics-listen"]).toBe("http://127.0.0.1:2381");
    expect(c["log-level"]).toBe("info");
    expect(c["slow-request-threshold"]).toBe(100);
    expect(c["slow-request-interval"]).toBe(10_000);
  });
  test("an empty metrics-listen turns the listener off; bad values name the setting", () => {
    expect(loadConfig(["--metrics-listen", ""], {})["metrics-listen"]).toBe("");
    expect(() => loadConfig(["--metrics-listen", "127.0.0.1:2381"], {})).toThrow(
      "flag --metrics-listen: metrics-listen must be a URL starting with http://, or empty to turn it off",
    );
    expect(() => loadConfig([], { STRATA_LOG_LEVEL: "loud" })).toThrow("environment STRATA_LOG_LEVEL: log-level must be debug, info, warn or error");
    expect(() => loadConfig(["--slow-request-threshold", "fast"], {})).toThrow("slow-request-threshold must be a duration");
  });
});

describe("log", () => {
  const lines: string[] = [];
  const original = console.error;
  afterEach(() => {
    console.error = original;
    setLogLevel("info");
    lines.length = 0;
  });
  test("one JSON object per line with time, level and msg; bigints as text; lines below the level dropped", () => {
    console.error = (s: string) => lines.push(s);
    setLogLevel("warn");
    log("info", "dropped");
    log("warn", "kept", { revision: 12n });
    log("fatal", "always");
    expect(lines).toHaveLength(2);
    const first = JSON.parse(lines[0]!);
    expect(first).toMatchObject({ level: "warn", msg: "kept", revision: "12" });
    expect(Date.parse(first.time)).toBeGreaterThan(0);
    expect(JSON.parse(lines[1]!).level).toBe("fatal");
  });
  test("a slow request is a warning with its details; at debug every request is logged", () => {
    console.error = (s: string) => lines.push(s);
    const o = new Observer(100);
    const put = { service: "etcdserverpb.KV", method: "Put", type: "unary" as const };
    o.callFinished(put, "OK", 0.05, () => ({ key: "fast" }));
    o.callFinished(put, "OK", 0.25, () => ({ key: "slow", backend: "main" }));
    setLogLevel("debug");
    o.callFinished(put, "OK", 0.05, () => ({ key: "fast" }));
    expect(lines.map((l) => JSON.parse(l))).toMatchObject([
      { level: "warn", msg: "request took too long", method: "/etcdserverpb.KV/Put", took: "250.0ms", "expected-duration": "100ms", code: "OK", key: "slow", backend: "main" },
      { level: "debug", msg: "request", method: "/etcdserverpb.KV/Put", took: "50.0ms", key: "fast" },
    ]);
  });
  test("under load, slow requests make one line per interval: the first in full, then how many more and the slowest", async () => {
    console.error = (s: string) => lines.push(s);
    const o = new Observer(100, 300);
    const put = { service: "etcdserverpb.KV", method: "Put", type: "unary" as const };
    const range = { service: "etcdserverpb.KV", method: "Range", type: "unary" as const };
    o.callFinished(put, "OK", 0.2, () => ({ key: "first" }));
    o.callFinished(put, "OK", 0.3, () => ({ key: "p1" }));
    o.callFinished(range, "OK", 0.9, () => ({ key: "slowest" }));
    o.callFinished(put, "Unavailable", 0.4, () => ({ key: "p2" }));
    o.callFinished(put, "OK", 0.05, () => ({ key: "fast" }));
    expect(lines).toHaveLength(1);
    const end = Date.now() + 10_000;
    while (lines.length < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    o.stop();
    expect(lines.map((l) => JSON.parse(l))).toMatchObject([
      { level: "warn", msg: "request took too long", method: "/etcdserverpb.KV/Put", took: "200.0ms", key: "first" },
      {
        level: "warn",
        msg: "requests took too long",
        count: 3,
        interval: "300ms",
        "expected-duration": "100ms",
        methods: { "/etcdserverpb.KV/Put": 2, "/etcdserverpb.KV/Range": 1 },
        slowest: { method: "/etcdserverpb.KV/Range", took: "900.0ms", code: "OK", key: "slowest" },
      },
    ]);
  });
});

describe("timeline", () => {
  test("a point per tick: rate, p50 and p99 of that second's requests, watchers", () => {
    const t = new Timeline(() => 7, 3);
    for (let ms = 1; ms <= 100; ms++) t.record(ms);
    t.tick(Date.now() + 1000);
    expect(t.points[0]).toMatchObject({ p50: 51, p99: 100, watchers: 7 });
    expect(t.points[0]!.rate).toBeGreaterThan(0);
    t.tick(Date.now() + 2000);
    expect(t.points[1]).toMatchObject({ rate: 0, p50: null, p99: null });
    for (let i = 0; i < 5; i++) t.tick(Date.now() + 3000 + i);
    expect(t.points).toHaveLength(3);
  });
});

describe("cached", () => {
  test("reads once per max age; concurrent askers share a read; a failed read is not kept", async () => {
    let reads = 0;
    let fail = false;
    const c = new Cached(async () => {
      reads++;
      if (fail) throw new Error("down");
      return reads;
    }, 50);
    expect(await Promise.all([c.get(), c.get()])).toEqual([1, 1]);
    expect(await c.get()).toBe(1);
    await new Promise((r) => setTimeout(r, 60));
    fail = true;
    await expect(c.get()).rejects.toThrow("down");
    fail = false;
    expect(await c.get()).toBe(3);
  });
});

test("keys in the slow-request log: printable bytes as they are, others escaped, long keys cut", () => {
  expect(printable(new TextEncoder().encode("/registry/pods/default/a"))).toBe("/registry/pods/default/a");
  expect(printable(new Uint8Array([0x61, 0x00, 0xff, 0x5c]))).toBe("a\\x00\\xff\\x5c");
  expect(printable(new Uint8Array(500).fill(0x61))).toBe(`${"a".repeat(200)}…`);
});
