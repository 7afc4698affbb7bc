// Every shell command in README.md and docs/*.md, run as written (issue 26): each ```sh or
// ```bash block runs in bash in a fresh directory that looks like a checkout (the
// repository's files linked in), with `strata` on PATH as the installed executable would
// be and without node_modules/.bin (a user's shell has no `bun`), so a command that needs
// something the docs do not say fails here. Before a block, an HTML comment may say
// what it needs:
//   <!-- doc-test: skip REASON -->   cannot run in a test (systemd, k3s, a container
//                                   engine, the registry); counted and printed
//   <!-- doc-test: serve -->         every command starts a server: it must answer on the
//                                   client port, then it is stopped
//   <!-- doc-test: fixture NAME -->  what the block starts from (FIXTURES below); without
//                                   one, a strata serves on the block's ports
//   <!-- doc-test: continues -->     runs in the shell of the block before it
// Within a block, a command whose comment says "in another terminal" runs in the
// background (a strata started so is waited for) and must still run at the block's end; one
// whose comment starts "Error:" must fail with that message. Ports, hosts and paths of the
// docs are replaced by the block's own (substitute). Every relative link must name a file and
// a heading that exist, so text moved between files leaves no link behind.
import { afterAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { makeCa, makeCert } from "../support/certs.ts";
import { freePort } from "../support/strata.ts";

const ROOT = resolve(import.meta.dir, "../..");
const PASSWORD = "docs-test-password";

interface Command {
  text: string;
  line: number;
  background: boolean;
  /** the error message the command must fail with */
  error?: string;
}

interface Block {
  file: string;
  line: number;
  kind: "run" | "skip" | "serve";
  fixture: string;
  reason?: string;
  commands: Command[];
  /** blocks marked `continues` joined to this one */
  continued: boolean;
}

/** the text of a line before its comment (a # after whitespace, outside quotes), and the comment */
export function splitComment(line: string): { code: string; comment: string } {
  let quote = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = "";
    } else if (c === "'" || c === '"') quote = c;
    else if (c === "#" && (i === 0 || /\s/.test(line[i - 1]))) return { code: line.slice(0, i).trimEnd(), comment: line.slice(i + 1).trim() };
  }
  return { code: line.trimEnd(), comment: "" };
}

/** the shell blocks of one markdown file, with their commands and annotations */
export function parseBlocks(file: string, text: string): Block[] {
  const lines = text.split("\n");
  const blocks: Block[] = [];
  let annotation = "";
  for (let i = 0; i < lines.length; i++) {
    const fence = /^(\s*)```(\w*)\s*$/.exec(lines[i]);
    const note = /^\s*<!--\s*doc-test:\s*(.*?)\s*-->\s*$/.exec(lines[i]);
    if (note) {
      annotation = note[1];
      continue;
    }
    if (!fence) {
      if (lines[i].trim()) annotation = "";
      continue;
    }
    // any fenced block: find its end; only sh and bash blocks are commands
    const indent = fence[1].length;
    const body: { text: string; line: number }[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]); j++) body.push({ text: lines[j].slice(indent), line: j + 1 });
    if (fence[2] === "sh" || fence[2] === "bash") blocks.push(block(file, i + 1, annotation, body));
    else if (annotation) throw new Error(`${file}:${i + 1}: doc-test annotation on a ${fence[2] || "plain"} block`);
    annotation = "";
    i = j;
  }
  return blocks;
}

function block(file: string, line: number, annotation: string, body: { text: string; line: number }[]): Block {
  const [word = "", ...rest] = annotation.split(/\s+/).filter(Boolean);
  const b: Block = { file, line, kind: "run", fixture: "strata", commands: [], continued: false };
  if (word === "skip") {
    if (!rest.length) throw new Error(`${file}:${line}: doc-test: skip needs a reason`);
    Object.assign(b, { kind: "skip", reason: rest.join(" ") });
  } else if (word === "serve") Object.assign(b, { kind: "serve", fixture: "none" });
  else if (word === "fixture") {
    if (!(rest[0] in FIXTURES)) throw new Error(`${file}:${line}: unknown fixture "${rest[0]}"; known: ${Object.keys(FIXTURES).join(", ")}`);
    b.fixture = rest[0];
  } else if (word === "continues") b.fixture = "continues";
  else if (word) throw new Error(`${file}:${line}: unknown doc-test annotation "${annotation}"`);
  let pending: { text: string; line: number } | undefined;
  for (const { text, line: at } of body) {
    const joined = pending ? `${pending.text}\n${text}` : text;
    if (!pending && (!text.trim() || text.trim().startsWith("#"))) continue;
    if (text.endsWith("\\")) {
      pending = { text: joined, line: pending?.line ?? at };
      continue;
    }
    const { comment } = splitComment(text);
    b.commands.push({
      text: joined,
      line: pending?.line ?? at,
      background: /in another terminal/.test(comment),
      error: comment.startsWith("Error:") ? comment : undefined,
    });
    pending = undefined;
  }
  if (!b.commands.length) throw new Error(`${file}:${line}: a shell block without commands`);
  return b;
}

interface Ports {
  client: number;
  metrics: number;
  etcd: number;
  etcdPeer: number;
}

/** the docs' addresses and paths → the block's own */
function substitute(text: string, dir: string, p: Ports): string {
  return text
    .replace(/\b(127\.0\.0\.1|0\.0\.0\.0|localhost|strata\.example):2379\b/g, `127.0.0.1:${p.client}`)
    .replace(/\b(127\.0\.0\.1|0\.0\.0\.0|localhost):2381\b/g, `127.0.0.1:${p.metrics}`)
    .replace(/\betcd\.example:2379\b/g, `127.0.0.1:${p.etcd}`)
    .replace(/\/etc\/strata\//g, `${dir}/`);
}

const ROUTES = `backends:
  main: sqlite://./main.db
  events: sqlite://./events.db
default: main
routes:
  - match: { resource: events }
    backend: events
`;
const NEW_ROUTES = `${ROUTES}  - match: { namespace: "team-*" }
    backend: events
`;

/** bash run before a block: what it starts from (files, servers); `strata` serves on $PORT */
const FIXTURES: Record<string, (dir: string) => string> = {
  none: () => "",
  continues: () => "",
  strata: () => "start_strata",
  routing: (dir) => {
    writeFileSync(join(dir, "strata.yaml"), ROUTES);
    writeFileSync(join(dir, "new.yaml"), NEW_ROUTES);
    return "start_strata --config strata.yaml\netcdctl --endpoints=127.0.0.1:$PORT put /registry/pods/team-a/web-0 pod >/dev/null";
  },
  "routing-offline": (dir) => {
    writeFileSync(join(dir, "old.yaml"), ROUTES);
    writeFileSync(join(dir, "new.yaml"), NEW_ROUTES);
    return "";
  },
  etcd: (dir) => {
    writeFileSync(join(dir, "strata.yaml"), "backend: sqlite://./strata.db\n");
    return [
      "etcd --data-dir etcd-data --listen-client-urls http://127.0.0.1:$ETCD_PORT --advertise-client-urls http://127.0.0.1:$ETCD_PORT \\",
      "  --listen-peer-urls http://127.0.0.1:$ETCD_PEER_PORT --initial-advertise-peer-urls http://127.0.0.1:$ETCD_PEER_PORT \\",
      "  --initial-cluster default=http://127.0.0.1:$ETCD_PEER_PORT >etcd.log 2>&1 &",
      "background $! $ETCD_PORT etcd.log",
      "etcdctl --endpoints=127.0.0.1:$ETCD_PORT put /registry/pods/default/web-0 pod >/dev/null",
    ].join("\n");
  },
  tls: (dir) => {
    const ca = makeCa(dir, "ca");
    makeCert(dir, "server", ca, "server");
    makeCert(dir, "client", ca, "client");
    return "";
  },
  // a strata serving TLS that asks clients for certificates; root.crt's CN is root
  "tls-server": (dir) => {
    const ca = makeCa(dir, "ca");
    makeCert(dir, "server", ca, "server");
    makeCert(dir, "root", ca, "client");
    return "start_strata --listen https://127.0.0.1:$PORT --cert-file server.crt --key-file server.key --trusted-ca-file ca.crt --client-cert-auth";
  },
};

// helpers every block's script has: background PID PORT LOG waits until PORT accepts while
// PID runs; the EXIT trap stops what the block left running
const PRELUDE = `
set -o pipefail
pids=()
cleanup() { for p in "\${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
fail() { echo "doc-test: $1" >&2; exit 1; }
background() {
  pids+=("$1")
  [ -z "$2" ] && return 0
  for i in $(seq 1 1200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || { cat "$3" >&2; fail "the server (pid $1) ended before it answered on port $2"; }
    sleep 0.1
  done
  fail "nothing answered on port $2 within 120 s"
}
start_strata() { setsid strata "$@" >strata.log 2>&1 </dev/null & background $! "$PORT" strata.log; }
still_running() { kill -0 "$1" 2>/dev/null || { cat "$2" >&2; fail "$3 ended before the block did"; }; }
`;

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/** the bash script of a block (its commands after the fixture) */
function script(b: Block, fixture: string, dir: string, ports: Ports): string {
  const out = [PRELUDE, fixture];
  b.commands.forEach((c, n) => {
    const cmd = substitute(c.text, dir, ports);
    const where = shellQuote(`${b.file}:${c.line}: ${c.text.split("\n")[0]}`);
    if (b.kind === "serve") {
      out.push(`setsid bash -c ${shellQuote(cmd)} >serve-${n}.log 2>&1 </dev/null &`);
      out.push(`background $! "$PORT" serve-${n}.log`);
      out.push(`curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { cat serve-${n}.log >&2; fail ${where}' answers no /health'; }`);
      out.push(`kill -TERM -- -$! ; wait $! 2>/dev/null; pids=()`);
    } else if (c.background) {
      const port = /^\s*(strata|npx strata|npm start)\b/.test(c.text) ? '"$PORT"' : '""';
      out.push(`setsid bash -c ${shellQuote(cmd)} >bg-${n}.log 2>&1 <stdin.txt &`);
      out.push(`bg_${n}=$!; background $! ${port} bg-${n}.log; sleep 0.5`);
    } else if (c.error) {
      out.push(`out=$( { ${cmd}\n} 2>&1 <stdin.txt ) && fail ${where}' succeeded; expected it to fail'`);
      out.push(`grep -qF ${shellQuote(c.error)} <<<"$out" || { echo "$out" >&2; fail ${where}' failed with another error'; }`);
    } else {
      out.push(`{ ${cmd}\n} <stdin.txt || fail ${where}" exited with $?"`);
    }
  });
  b.commands.forEach((c, n) => {
    if (b.kind !== "serve" && c.background) out.push(`still_running "$bg_${n}" bg-${n}.log ${shellQuote(`${b.file}:${c.line}`)}`);
  });
  return out.join("\n");
}

/** a directory that looks like a checkout: the repository's files linked in */
function checkoutDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "strata-docs-"));
  for (const name of readdirSync(ROOT)) {
    if (name === ".git" || name.endsWith(".db") || name === "dist" || name === ".tmp") continue;
    symlinkSync(join(ROOT, name), join(dir, name));
  }
  symlinkSync(join(ROOT, ".git"), join(dir, ".git"));
  const bin = join(dir, ".bin");
  mkdirSync(bin);
  // the installed executable: the same commands, run from these sources
  symlinkSync(join(ROOT, "bin/strata.mjs"), join(bin, "strata"));
  writeFileSync(join(dir, "stdin.txt"), `${PASSWORD}\n`.repeat(4));
  return dir;
}

/** PATH as a user's shell has it: no node_modules/.bin (npm puts it there for `npm test`) */
function userPath(bin: string): string {
  const rest = (process.env.PATH ?? "").split(delimiter).filter((p) => p && !p.includes("node_modules"));
  return [bin, ...rest].join(delimiter);
}

function runBash(source: string, dir: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((done) => {
    // a process group of its own, so a block stopped at the timeout takes what it started along
    const child = spawn("bash", ["-c", source], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const timer = setTimeout(() => {
      output += `\n(doc-test: stopped after ${timeoutMs / 1000} s)`;
      process.kill(-child.pid!, "SIGKILL");
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      done({ code, output });
    });
  });
}

const docs = ["README.md", ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)];
const blocks = docs.flatMap((f) => parseBlocks(f, readFileSync(join(ROOT, f), "utf8")));
// a `continues` block runs in its predecessor's shell: one test for both
const runs: Block[] = [];
for (const b of blocks) {
  const prev = runs.at(-1);
  if (b.fixture === "continues" && b.kind === "run") {
    if (!prev || prev.file !== b.file || prev.kind !== "run") throw new Error(`${b.file}:${b.line}: continues no block`);
    prev.commands.push(...b.commands);
    prev.continued = true;
  } else runs.push({ ...b, commands: [...b.commands] });
}
const skipped = runs.filter((b) => b.kind === "skip");

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes */
function anchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replaceAll(" ", "-");
}

/** the relative links of every doc that name no file, or no heading of it */
function brokenLinks(): string[] {
  const broken: string[] = [];
  const anchors = (file: string) =>
    readFileSync(join(ROOT, file), "utf8").split("\n").filter((l) => /^#{1,6} /.test(l)).map((l) => anchor(l.replace(/^#+ /, "")));
  for (const file of docs) {
    const text = readFileSync(join(ROOT, file), "utf8").replace(/```[\s\S]*?```/g, "");
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target)) continue;
      const [path, hash] = target.split("#");
      const linked = path ? join(file.includes("/") ? "docs" : "", path) : file;
      let exists = true;
      try {
        readFileSync(join(ROOT, linked));
      } catch {
        exists = false;
      }
      if (!exists) broken.push(`${file}: ${target}: no file ${linked}`);
      else if (hash && linked.endsWith(".md") && !anchors(linked).includes(hash)) broken.push(`${file}: ${target}: no heading #${hash} in ${linked}`);
    }
  }
  return broken;
}

// a doc command that ran the suite would run this test again: never inside itself
const nested = process.env.STRATA_DOCS_TEST === "1";

describe.skipIf(nested)("every shell command in README.md and docs/", () => {
  test("the docs have shell blocks, and few are skipped", () => {
    expect(runs.length).toBeGreaterThan(10);
    // skipping is for what a test machine cannot do (systemd, k3s, a kube-apiserver, a
    // container engine); the list stays short and each one says why
    expect(skipped.length).toBeLessThanOrEqual(14);
  });

  test("every relative link names a file and a heading that exist", () => {
    expect(brokenLinks()).toEqual([]);
  });

  test("docs/README.md lists every document", () => {
    const index = readFileSync(join(ROOT, "docs/README.md"), "utf8");
    expect(docs.filter((f) => f.startsWith("docs/") && f !== "docs/README.md" && !index.includes(`](${f.slice(5)})`))).toEqual([]);
  });

  for (const b of runs.filter((r) => r.kind !== "skip")) {
    test(`${b.file}:${b.line} (${b.commands.length} command${b.commands.length > 1 ? "s" : ""})`, async () => {
      const dir = checkoutDir();
      try {
        const ports: Ports = { client: await freePort(), metrics: await freePort(), etcd: await freePort(), etcdPeer: await freePort() };
        const env = {
          ...process.env,
          PATH: userPath(join(dir, ".bin")),
          PORT: String(ports.client),
          ETCD_PORT: String(ports.etcd),
          ETCD_PEER_PORT: String(ports.etcdPeer),
          // where a command gives no flags of its own (`strata`, `npm start`)
          STRATA_LISTEN: `http://127.0.0.1:${ports.client}`,
          STRATA_METRICS_LISTEN: `http://127.0.0.1:${ports.metrics}`,
          ETCDCTL_API: "3",
          STRATA_DOCS_TEST: "1",
        };
        const { code, output } = await runBash(script(b, FIXTURES[b.fixture](dir), dir, ports), dir, env, 300_000);
        if (code !== 0) throw new Error(`${b.file}:${b.line}: the block failed (exit ${code}):\n${output}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 320_000);
  }

  afterAll(() => {
    const commands = (k: Block["kind"]) => runs.filter((b) => b.kind === k).reduce((n, b) => n + b.commands.length, 0);
    console.log(`doc commands: ${commands("run") + commands("serve")} run, ${commands("skip")} skipped by design in ${skipped.length} blocks:`);
    for (const b of skipped) console.log(`  ${b.file}:${b.line} (${b.commands.length}): ${b.reason}`);
  });
});
