// Reads a Chrome-format CPU profile (`npm run bench -- --profile DIR --profile-format chrome`)
// by counting samples, not weighing them by time: time the process spent descheduled lands
// on whatever ran next in the weighed view (docs/performance.md). Prints the functions with
// the most samples of their own, the most samples under them, and by file; with --under
// NAME, what the samples under the function NAME went to; with --over NAME, what called it.
//   bun scripts/bench/profile-summary.ts FILE.cpuprofile [--top 40] [--under NAME | --over NAME]
// Not a test.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: "string", default: "40" }, under: { type: "string" }, over: { type: "string" } },
});
const file = positionals[0];
if (!file) throw new Error("usage: profile-summary.ts FILE.cpuprofile [--top N] [--under NAME | --over NAME]");
const top = Number(values.top);
const profile = JSON.parse(readFileSync(file, "utf8")) as { nodes: ProfileNode[]; samples: number[] };

const byId = new Map<number, ProfileNode>();
const parent = new Map<number, number>();
for (const n of profile.nodes) {
  byId.set(n.id, n);
  for (const c of n.children ?? []) parent.set(c, n.id);
}
const where = (url: string) => url.replace(/.*\/(src|node_modules)\//, "$1/");
const name = (n: ProfileNode) => `${n.callFrame.functionName || "(anonymous)"} ${where(n.callFrame.url)}:${n.callFrame.lineNumber}`;
/** a sample's stack, innermost first */
const stack = (id: number) => {
  const out: ProfileNode[] = [];
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) out.push(byId.get(at)!);
  return out;
};
const count = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
const show = (title: string, m: Map<string, number>, of: number) => {
  console.log(`== ${title} (${of} samples)`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${((100 * v) / of).toFixed(1).padStart(5)}% ${k}`);
};

const total = profile.samples.length;
const target = values.under ?? values.over;
if (target !== undefined) {
  const m = new Map<string, number>();
  let hits = 0;
  for (const s of profile.samples) {
    const st = stack(s);
    const i = st.findIndex((n) => n.callFrame.functionName === target);
    if (i < 0) continue;
    hits++;
    // three frames below it, outermost first; or five above it, nearest first
    const path = values.under !== undefined ? (i === 0 ? ["(its own)"] : st.slice(Math.max(0, i - 3), i).reverse()) : st.slice(i + 1, i + 6);
    count(m, path.map((n) => (typeof n === "string" ? n : name(n))).join(values.under !== undefined ? " > " : " < "));
  }
  show(`${values.under !== undefined ? "under" : "over"} ${target}: ${((100 * hits) / total).toFixed(1)}% of all`, m, hits);
} else {
  const self = new Map<string, number>(), inclusive = new Map<string, number>(), files = new Map<string, number>();
  for (const s of profile.samples) {
    const st = stack(s);
    count(self, name(st[0]!));
    for (const k of new Set(st.map(name))) count(inclusive, k);
    for (const f of new Set(st.map((n) => where(n.callFrame.url)))) count(files, f || "(native)");
  }
  show("own samples", self, total);
  show("samples under", inclusive, total);
  show("samples under, by file", files, total);
}
