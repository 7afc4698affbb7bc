import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config/config.ts";
import { parseDuration } from "../../src/config/duration.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-config-"));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe("configuration", () => {
  test("defaults serve SQLite on loopback", () => {
    const c = loadConfig([], {});
    expect(c.listen).toBe("http://127.0.0.1:2379");
    expect(c.backend).toBe("sqlite://./strata.db");
    expect(c["max-txn-ops"]).toBe(128);
    expect(c.autoCompaction).toEqual({ mode: "periodic", retentionMs: 3_600_000 });
  });
  test("flags beat the environment, which beats the file", () => {
    const f = file("a.yaml", "listen: http://127.0.0.1:1\nbackend: sqlite://file.db\nname: from-file\n");
    const c = loadConfig(["--config", f, "--listen", "http://127.0.0.1:3"], {
      STRATA_LISTEN: "http://127.0.0.1:2",
      STRATA_BACKEND: "sqlite://env.db",
    });
    expect(c.listen).toBe("http://127.0.0.1:3");
    expect(c.backend).toBe("sqlite://env.db");
    expect(c.name).toBe("from-file");
  });
  test("a bad value names its source and setting", () => {
    const f = file("b.yaml", "max-txn-ops: -4\n");
    expect(() => loadConfig(["--config", f], {})).toThrow(`${f}: max-txn-ops: max-txn-ops must be a positive whole number`);
    expect(() => loadConfig(["--backend", "mongodb://x"], {})).toThrow("flag --backend: backend must be a URL starting with sqlite://");
    expect(() => loadConfig([], { STRATA_WATCH_PROGRESS_NOTIFY_INTERVAL: "soon" })).toThrow(
      "environment STRATA_WATCH_PROGRESS_NOTIFY_INTERVAL: watch-progress-notify-interval must be a duration",
    );
  });
  test("an unknown setting in the file is refused", () => {
    const f = file("c.json", JSON.stringify({ listn: "http://x" }));
    expect(() => loadConfig(["--config", f], {})).toThrow('unknown setting "listn"');
  });
  test("a broken file says where", () => {
    const f = file("d.yaml", "listen: [unclosed\n");
    expect(() => loadConfig(["--config", f], {})).toThrow(`${f}: not valid YAML`);
    expect(() => loadConfig(["--config", join(dir, "missing.yaml")], {})).toThrow("cannot read config file");
  });
  test("unknown flags are refused", () => {
    expect(() => loadConfig(["--lisen", "x"], {})).toThrow("see strata serve --help");
  });
  test("auto compaction: hours, durations, revisions, off", () => {
    expect(loadConfig(["--auto-compaction-retention", "2"], {}).autoCompaction).toEqual({ mode: "periodic", retentionMs: 7_200_000 });
    expect(loadConfig(["--auto-compaction-retention", "30m"], {}).autoCompaction).toEqual({ mode: "periodic", retentionMs: 1_800_000 });
    expect(loadConfig(["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000"], {}).autoCompaction)
      .toEqual({ mode: "revision", retention: 1000n });
    expect(loadConfig(["--auto-compaction-retention", "0"], {}).autoCompaction).toBeUndefined();
    expect(() => loadConfig(["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"], {})).toThrow("number of revisions");
  });
  test("durations", () => {
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("10")).toBeUndefined();
    expect(parseDuration("5 minutes")).toBeUndefined();
  });
});
