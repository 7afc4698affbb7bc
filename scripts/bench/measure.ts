// How the benchmark measures: closed-loop client concurrency, percentiles, and the
// memory of the server process listening on an endpoint.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

export interface Driven {
  /** completed operations per second */
  rate: number;
  /** milliseconds per operation */
  lat: number[];
}

/** Runs op(i) for i in [0, n) over `clients` concurrent loops. */
export async function drive(n: number, clients: number, op: (i: number) => Promise<unknown>): Promise<Driven> {
  let next = 0;
  const lat: number[] = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next < n) {
      const i = next++;
      const s = performance.now();
      await op(i);
      lat.push(performance.now() - s);
    }
  }));
  return { rate: n / ((performance.now() - t0) / 1000), lat };
}

/** the p-quantile (0..1) of xs; NaN when empty */
export function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

export const median = (xs: number[]) => pct(xs, 0.5);

/** Figures of several runs: `figures.get(a).get(b)` holds one value per run. */
export function recordRun(figures: Map<string, Map<string, number[]>>, a: string, b: string, v: number): void {
  let inner = figures.get(a);
  if (!inner) figures.set(a, (inner = new Map()));
  let runs = inner.get(b);
  if (!runs) inner.set(b, (runs = []));
  runs.push(v);
}

export interface Memory {
  /** resident set now, MiB */
  rss: number;
  /** the most it has been resident, MiB */
  peak: number;
}

/** The memory of the process listening on endpoint's port (found through /proc). */
export function serverMemory(endpoint: string): Memory {
  const pid = listenerPid(Number(endpoint.split(":").at(-1)));
  if (pid === undefined) return { rss: NaN, peak: NaN };
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) => Number(status.match(new RegExp(`${field}:\\s+(\\d+) kB`))?.[1] ?? NaN);
  return { rss: kib("VmRSS") / 1024, peak: kib("VmHWM") / 1024 };
}

export function listenerPid(port: number): string | undefined {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // state 0A: listening
      if (f.length >= 10 && f[3] === "0A" && parseInt(f[1]!.split(":").at(-1)!, 16) === port) inodes.add(f[9]!);
    }
  }
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (link.startsWith("socket:[") && inodes.has(link.slice(8, -1))) return pid;
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return undefined;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
