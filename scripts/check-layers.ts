// The layering check (`bun scripts/check-layers.ts`, run by scripts/test): reads the import
// graph of src/ and fails on any import cycle between files and on any import that points
// up the layer order below. DESIGN.md draws the house; this is what keeps it true.
// Exits 0 and prints one summary line when the graph is clean; otherwise prints one line
// per problem and exits 1.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");

/**
 * The layers, top to bottom, each with why it sits there. A file may import from its own
 * layer and from any layer below it, never from one above. A file belongs to the layer of
 * the longest pattern that matches it (a pattern ending in "/" is a folder).
 */
const LAYERS: Array<{ name: string; files: string[]; why: string }> = [
  { name: "main", files: ["src/main.ts"], why: "the entry: dispatches to a command" },
  { name: "cli", files: ["src/cli/"], why: "the commands compose every layer (serve opens the keyspace and serves the api on it)" },
  { name: "api", files: ["src/api/"], why: "etcd's gRPC services and the HTTP endpoints: the top of the request path" },
  {
    name: "observe",
    files: ["src/observe/"],
    why: "metrics, health and the status page read the keyspace, the router and the databases; api serves them",
  },
  {
    name: "keyspace",
    files: ["src/keyspace/"],
    why: "the Keyspace the api serves: the databases (router plus watch hub, leases, compaction) and a dispatcher over them and any upstream etcd",
  },
  { name: "router", files: ["src/router/"], why: "routing policy: key -> database, merged reads and watches, live moves" },
  { name: "mvcc", files: ["src/mvcc/"], why: "one database's etcd semantics (store, txn apply, quota) over the Backend contract" },
  {
    name: "backends",
    files: ["src/backends/"],
    why: "one module per database family; each implements mvcc's Backend contract, an upstream etcd the Keyspace contract",
  },
  {
    name: "keyspace contract",
    files: ["src/keyspace/contract.ts"],
    why: "the Keyspace interface the api talks to: owned by the keyspace layer, implemented below it by an upstream etcd (backends/etcd), so it sits under both",
  },
  {
    name: "snapshot",
    files: ["src/snapshot/"],
    why: "etcd's snapshot file (bbolt pages, etcd's buckets) written from any source of history and leases, and read back: api and cli use it; below the databases, it sees only mvcc's contract types",
  },
  {
    name: "mvcc contract",
    files: [
      "src/mvcc/backend.ts",
      "src/mvcc/types.ts",
      "src/mvcc/errors.ts",
      "src/mvcc/keyrange.ts",
      "src/mvcc/revisions.ts",
      "src/mvcc/kv-encoding.ts",
      "src/mvcc/responses.ts",
      "src/mvcc/deadline.ts",
    ],
    why: "what a backend implements and speaks, and the answers a keyspace gives: owned by mvcc, the one part of it the layers below import",
  },
  {
    name: "selectors",
    files: ["src/selectors/"],
    why: "Kubernetes label/field selectors over stored objects, pure: the api validates a request's selectors with them, the keyspace filters ranges and watches",
  },
  { name: "config", files: ["src/config/"], why: "parses flags, environment and the config file; the layers read its types" },
  {
    name: "base",
    files: ["src/gen/", "src/util/", "src/observe/log.ts"],
    why: "generated protobuf types, plain utilities and the logger: imported by every layer, import none",
  },
];

/**
 * Imports that still point up, each with what removes it. The list may only shrink: an
 * entry that no longer matches an import fails the check too, so it is deleted with the
 * import.
 */
const KNOWN_EXCEPTIONS: Array<{ from: string; to: string; why: string }> = [];

/**
 * Imports that point down but skip what should stand between: a layer that may reach only
 * the contract of the one below it, never its parts.
 */
const FORBIDDEN: Array<{ from: string; layers: string[]; why: string }> = [
  {
    from: "api",
    layers: ["keyspace", "router", "mvcc", "backends"],
    why: "the api talks to the Keyspace interface only (keyspace/contract.ts, and mvcc's contract for the shapes it speaks)",
  },
];

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(join(ROOT, dir))) {
    const path = `${dir}/${name}`;
    if (statSync(join(ROOT, path)).isDirectory()) sourceFiles(path, out);
    else if (/\.tsx?$/.test(name)) out.push(path);
  }
  return out;
}

/** import/export … from "x", import "x" and import("x"): the relative specifiers only */
const IMPORT = /\b(?:import|export)\s[^"'`;]*?\bfrom\s*["']([^"']+)["']|\bimport\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/g;

function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  const out = new Set<string>();
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    if (!spec.startsWith(".")) continue; // packages, node:, bun:
    const target = normalize(join(dirname(file), spec));
    if (target.startsWith("src/")) out.add(target);
  }
  return [...out];
}

function layerOf(file: string): number | undefined {
  let best: { index: number; length: number } | undefined;
  LAYERS.forEach((layer, index) => {
    for (const p of layer.files) {
      const hit = p.endsWith("/") ? file.startsWith(p) : file === p;
      if (hit && (!best || p.length > best.length)) best = { index, length: p.length };
    }
  });
  return best?.index;
}

/** Tarjan's strongly connected components: every group of files that import each other in a circle. */
function cycles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>(), low = new Map<string, number>(), stack: string[] = [], onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

const files = sourceFiles("src").sort();
const known = new Set(files);
const graph = new Map(files.map((f) => [f, importsOf(f)]));
const problems: string[] = [];
const usedExceptions = new Set<(typeof KNOWN_EXCEPTIONS)[number]>();
let imports = 0;

for (const [file, targets] of graph) {
  const from = layerOf(file);
  if (from === undefined) problems.push(`${file}: in no layer; add its folder to LAYERS in scripts/check-layers.ts`);
  for (const target of targets) {
    imports++;
    if (!known.has(target)) {
      problems.push(`${file}: imports ${target}, which does not exist`);
      continue;
    }
    const to = layerOf(target);
    if (from === undefined || to === undefined) continue;
    const forbidden = FORBIDDEN.find((f) => f.from === LAYERS[from]!.name && f.layers.includes(LAYERS[to]!.name));
    if (forbidden) problems.push(`${file} (${LAYERS[from]!.name}) imports ${target} (${LAYERS[to]!.name}): ${forbidden.why}`);
    if (to >= from) continue;
    const exception = KNOWN_EXCEPTIONS.find((e) => e.from === file && e.to === target);
    if (exception) {
      usedExceptions.add(exception);
      continue;
    }
    problems.push(`${file} (${LAYERS[from]!.name}) imports ${target} (${LAYERS[to]!.name}): against the layer order`);
  }
}
for (const e of KNOWN_EXCEPTIONS) {
  if (!usedExceptions.has(e)) problems.push(`known exception ${e.from} -> ${e.to} no longer happens: delete it from KNOWN_EXCEPTIONS`);
}
for (const scc of cycles(graph)) problems.push(`import cycle: ${scc.join(" -> ")}`);

if (problems.length > 0) {
  for (const p of problems) console.error(`check-layers: ${p}`);
  console.error(`check-layers: ${problems.length} problem(s); the layer order is in ${relative(process.cwd(), import.meta.path)}`);
  process.exit(1);
}
console.log(
  `layers: ${files.length} files, ${imports} imports, no cycle, none against the order ` +
    `${LAYERS.map((l) => l.name).join(" > ")} (${KNOWN_EXCEPTIONS.length} known exceptions)`,
);
