// The benchmark's results: one row per workload and metric with a value per target,
// printed as a Markdown table with the strata/etcd ratio, checked against the goals,
// and written as JSON.
import type { Better } from "./workloads.ts";

export interface Row {
  workload: string;
  metric: string;
  better: Better;
  /** by target: "etcd", "strata/sqlite", ... */
  values: Record<string, number>;
}

export class Results {
  readonly rows: Row[] = [];

  /** Each row's median over several runs (the order of the first run). */
  static median(runs: Results[]): Results {
    const out = new Results();
    for (const r of runs[0]!.rows) {
      const values: Record<string, number> = {};
      for (const target of Object.keys(r.values)) {
        const xs = runs.map((run) => run.rows.find((x) => x.workload === r.workload && x.metric === r.metric)?.values[target])
          .filter((x): x is number => x !== undefined && !Number.isNaN(x))
          .sort((a, b) => a - b);
        values[target] = xs.length === 0 ? NaN : xs.length % 2 ? xs[(xs.length - 1) / 2]! : (xs[xs.length / 2 - 1]! + xs[xs.length / 2]!) / 2;
      }
      out.rows.push({ ...r, values });
    }
    return out;
  }

  record(target: string, workload: string, metric: string, better: Better, value: number): void {
    let row = this.rows.find((r) => r.workload === workload && r.metric === metric);
    if (!row) this.rows.push((row = { workload, metric, better, values: {} }));
    row.values[target] = value;
  }

  table(targets: string[]): string {
    const fmt = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? "–" : n >= 100 ? n.toFixed(0) : n.toFixed(1));
    const header = ["workload", "metric", ...targets.flatMap((t) => (t === "etcd" ? [t] : [t, "ratio"]))];
    const lines = [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`];
    for (const r of this.rows.filter((r) => r.better !== "info")) {
      const cells = targets.flatMap((t) => {
        const v = r.values[t];
        if (t === "etcd") return [fmt(v)];
        return [fmt(v), `${fmt(ratio(r, t))}×`];
      });
      lines.push(`| ${[r.workload, r.metric, ...cells].join(" | ")} |`);
    }
    for (const r of this.rows.filter((r) => r.better === "info")) {
      lines.push("", `${r.workload}, ${r.metric}: ${targets.map((t) => `${t} ${fmt(r.values[t])}`).join(", ")}`);
    }
    return lines.join("\n");
  }

  /** The goals of the performance work, each with the figure it is judged on. */
  goals(targets: string[]): string[] {
    const out: string[] = [];
    const find = (workload: string, metric: string) => this.rows.find((r) => r.workload.startsWith(workload) && r.metric === metric);
    const check = (label: string, row: Row | undefined, target: string, ok: (v: number, ratio: number) => boolean, shown: "ratio" | "value") => {
      if (!row || row.values[target] === undefined) return;
      const v = row.values[target]!, q = ratio(row, target);
      const figure = shown === "ratio" ? `${q.toFixed(2)}×` : `${v.toFixed(1)} ms`;
      out.push(`${ok(v, q) ? "met    " : "not met"}  ${label}: ${figure} (${target})`);
    };
    if (targets.includes("strata/sqlite")) {
      const t = "strata/sqlite";
      check("create ≥ 1.5× etcd's ops/s", find("create", "ops/s"), t, (_, q) => q >= 1.5, "ratio");
      check("guarded update ≥ 1.5× etcd's ops/s", find("guarded update", "ops/s"), t, (_, q) => q >= 1.5, "ratio");
      check("point get ≥ 1.0× etcd's ops/s", find("point get", "ops/s"), t, (_, q) => q >= 1.0, "ratio");
      check("paginated list ≤ 0.5× etcd's time", find("paginated list", "ms"), t, (_, q) => q <= 0.5, "ratio");
      check("full list ≤ 0.5× etcd's time", find("full list", "ms"), t, (_, q) => q <= 0.5, "ratio");
      check("watch delivery p99 ≤ 10 ms", find("watch delivery", "p99 ms"), t, (v) => v <= 10, "value");
      const perf = this.rows.find((r) => r.workload.startsWith("etcdctl check perf") && r.metric.startsWith("passed"));
      if (perf && perf.values[t] !== undefined) out.push(`${perf.values[t] === 1 ? "met    " : "not met"}  ${perf.workload} passes (${t})`);
      for (const row of this.rows.filter((r) => r.workload.includes("keys stored"))) {
        check(`RSS with ${row.workload} ≤ 1.0× etcd's`, row, t, (_, q) => q <= 1.0, "ratio");
      }
    }
    for (const t of targets.filter((t) => t !== "etcd" && t !== "strata/sqlite")) {
      const worst = this.rows
        .filter((r) => r.better !== "info" && r.values[t] !== undefined && r.values.etcd)
        .map((r) => ({ r, slower: r.better === "higher" ? 1 / ratio(r, t) : ratio(r, t) }))
        .sort((a, b) => b.slower - a.slower)[0];
      if (worst) {
        out.push(`${worst.slower <= 2 ? "met    " : "not met"}  ${t} within 2× of etcd on every row: worst ${worst.r.workload} ${worst.r.metric} ${worst.slower.toFixed(2)}× slower`);
      }
    }
    return out;
  }
}

/** strata's value over etcd's */
function ratio(r: Row, target: string): number {
  const v = r.values[target], e = r.values.etcd;
  return v === undefined || !e ? NaN : v / e;
}
