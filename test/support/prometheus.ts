// Reading strata's /metrics in tests: Prometheus's own promtool checks the text format,
// then samples are looked up by name and labels.
import { spawnSync } from "node:child_process";

/**
 * Runs `promtool check metrics` on the text; throws when promtool cannot parse it.
 * Returns the lint remarks (naming conventions), one per line.
 */
export function promtoolCheck(text: string): string[] {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  if (r.error) throw new Error(`promtool (Debian package prometheus) could not run: ${r.error.message}`);
  const out = `${r.stdout}${r.stderr}`.trim();
  // 0: clean; 3: parsed, with lint remarks; anything else: not valid exposition format
  if (r.status !== 0 && r.status !== 3) throw new Error(`promtool rejected the metrics (exit ${r.status}): ${out}`);
  return out === "" ? [] : out.split("\n");
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of the samples with this name whose labels include `labels`; undefined when there is none. */
export function value(all: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return found.length === 0 ? undefined : found.reduce((sum, s) => sum + s.value, 0);
}
