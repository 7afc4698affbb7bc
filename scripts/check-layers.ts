// The layering check (`bun scripts/check-layers.ts`, run by scripts/test): reads the import
// graph of src/ and fails on any import cycle between files and on any import the picture
// in DESIGN.md does not allow. The picture, drawn the same in docs/development.md:
//
//   main > cli > config          beside the stack: config parses, cli composes; no layer imports them
//   api        api/ observe/
//   keyspace   keyspace/         contract: keyspace/contract.ts
//   router     router/           contract: router/contract.ts
//   mvcc       mvcc/             contract: mvcc's Backend views and the types they speak
//   backends   backends/
//   shared     selectors/ snapshot/ util/ gen/, the logger: libraries every layer may use
//
// Every import points down the stack (or into shared). A layer below may import the
// contract of a layer above, which it implements, and nothing else of it; shared imports
// only shared and contracts; config only the layers (the shapes they take), never cli.
// Exits 0 and prints the picture on one line when the graph is clean; otherwise prints one
// line per problem and exits 1.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");

interface Group {
  name: string;
  /** folders (ending in "/") and files; a file belongs to the longest that matches it */
  members: string[];
  /** the files of the layer the layers that implement it may import from below */
  contract?: string[];
  /** the layers below that implement the contract */
  implementedBy?: string[];
  why: string;
}

/** Beside the stack, top to bottom: each may import those after it, the stack and shared. */
const BESIDE: Group[] = [
  { name: "main", members: ["src/main.ts"], why: "the entry: dispatches to a command" },
  { name: "cli", members: ["src/cli/"], why: "the commands compose the layers, passing them configuration as values" },
  {
    name: "config",
    members: ["src/config/"],
    why: "parses flags, environment and config files into the shapes the layers own (and imports those); no layer imports it",
  },
];

/** The stack, top to bottom, as DESIGN.md draws it. */
const STACK: Group[] = [
  {
    name: "api",
    members: ["src/api/", "src/observe/"],
    why: "etcd's gRPC services and the HTTP endpoints, with what they serve of metrics, health and the status page (observe/)",
  },
  {
    name: "keyspace",
    members: ["src/keyspace/"],
    contract: ["src/keyspace/contract.ts"],
    implementedBy: ["backends"],
    why: "the whole keyspace as clients see it: watch hub, leases, compaction, the dispatcher over the databases and any upstream etcd",
  },
  {
    name: "router",
    members: ["src/router/"],
    contract: ["src/router/contract.ts"],
    implementedBy: [],
    why: "routing policy: key -> database, merged reads and watches, live moves",
  },
  {
    name: "mvcc",
    members: ["src/mvcc/"],
    contract: [
      "src/mvcc/backend.ts",
      "src/mvcc/types.ts",
      "src/mvcc/errors.ts",
      "src/mvcc/keyrange.ts",
      "src/mvcc/revisions.ts",
      "src/mvcc/kv-encoding.ts",
      "src/mvcc/responses.ts",
      "src/mvcc/deadline.ts",
    ],
    implementedBy: ["backends"],
    why: "one database's etcd semantics (store, txn apply, quota) over the Backend contract it owns",
  },
  {
    name: "backends",
    members: ["src/backends/"],
    why: "one module per database family; each implements mvcc's Backend contract, an upstream etcd the Keyspace contract",
  },
];

/** Libraries at the base: they import one another and contracts, no layer's parts. */
const SHARED: Group = {
  name: "shared",
  members: ["src/selectors/", "src/snapshot/", "src/util/", "src/gen/"],
  why: "Kubernetes selectors, etcd's snapshot file, plain utilities, generated protobuf types and the logger",
};

/** Folders of a layer that reach the layers below only through their contracts. */
const THROUGH_CONTRACTS: Array<{ folder: string; why: string }> = [
  {
    folder: "src/api/",
    why: "the api talks to the Keyspace interface (keyspace/contract.ts) and speaks the contracts' shapes, never a layer's parts",
  },
  {
    folder: "src/observe/",
    why: "observe reads the running keyspace through its contract (ObservedKeyspace in keyspace/contract.ts) and times backends through mvcc's, never a layer's parts",
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

const GROUPS = [...BESIDE, ...STACK, SHARED];

function matches(file: string, pattern: string): boolean {
  return pattern.endsWith("/") ? file.startsWith(pattern) : file === pattern;
}

/** the group of the longest member pattern that matches the file */
function groupOf(file: string): Group | undefined {
  let best: { group: Group; length: number } | undefined;
  for (const group of GROUPS) {
    for (const p of group.members) if (matches(file, p) && (!best || p.length > best.length)) best = { group, length: p.length };
  }
  return best?.group;
}

function inContract(file: string, group: Group): boolean {
  return (group.contract ?? []).some((p) => matches(file, p));
}

/** why an import from `file` (in `from`) of `target` (in `to`) is against the picture; undefined when it is allowed */
function against(file: string, from: Group, target: string, to: Group): string | undefined {
  if (from === to) return undefined;
  const beside = (g: Group) => BESIDE.indexOf(g);
  if (beside(to) >= 0) {
    if (beside(from) >= 0 && beside(from) < beside(to)) return undefined;
    const importers = BESIDE.slice(0, beside(to)).map((g) => g.name);
    return `${to.name} is beside the stack: only ${importers.join(" and ")} ${importers.length > 1 ? "import" : "imports"} it`;
  }
  if (beside(from) >= 0) return undefined;
  const contract = inContract(target, to);
  if (from === SHARED) return contract ? undefined : "shared libraries import only one another and contracts, no layer's parts";
  if (to === SHARED) return undefined;
  const [i, j] = [STACK.indexOf(from), STACK.indexOf(to)];
  if (j < i) {
    return contract && to.implementedBy?.includes(from.name) ? undefined : `a layer below imports only the contract of a layer above that it implements (${to.name}'s: ${to.implementedBy?.join(", ") || "none"})`;
  }
  const through = THROUGH_CONTRACTS.find((t) => file.startsWith(t.folder));
  if (through && !contract) return through.why;
  return undefined;
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
let imports = 0;

for (const [file, targets] of graph) {
  const from = groupOf(file);
  if (from === undefined) problems.push(`${file}: in no layer; add its folder to one in scripts/check-layers.ts`);
  for (const target of targets) {
    imports++;
    if (!known.has(target)) {
      problems.push(`${file}: imports ${target}, which does not exist`);
      continue;
    }
    const to = groupOf(target);
    if (from === undefined || to === undefined) continue;
    const why = against(file, from, target, to);
    if (why) problems.push(`${file} (${from.name}) imports ${target} (${to.name}${inContract(target, to) ? " contract" : ""}): ${why}`);
  }
}
for (const scc of cycles(graph)) problems.push(`import cycle: ${scc.join(" -> ")}`);

if (problems.length > 0) {
  for (const p of problems) console.error(`check-layers: ${p}`);
  console.error(`check-layers: ${problems.length} problem(s); the picture is in ${relative(process.cwd(), import.meta.path)}`);
  process.exit(1);
}
const picture = STACK.map((g) => `${g.name}${g.implementedBy?.length ? ` (contract <- ${g.implementedBy.join(", ")})` : g.contract ? " (contract)" : ""}`).join(" > ");
console.log(
  `layers: ${files.length} files, ${imports} imports, no cycle, none against the picture: ` +
    `${BESIDE.map((g) => g.name).join(" > ")} beside | ${picture} | ${SHARED.name} (${SHARED.members.map((m) => m.replace(/^src\//, "")).join(" ")})`,
);
