// The mistakes a new user makes first, each answered with what to do: a SQLite file whose
// directory is missing (made, mode 0700, as etcd makes its data directory) or cannot be
// used (the path and the operating system's reason), kine's and k3s's flags (strata's
// flag that does the same), and a PostgreSQL role without rights on strata's tables
// ("permission denied", not "relation already exists").
import { afterAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import postgres from "postgres";
import { freePort, freshDatabase } from "../support/strata.ts";

const ROOT = resolve(import.meta.dir, "../..");
const work = mkdtempSync(join(tmpdir(), "strata-front-door-"));
/** an unprivileged user (the container image's), for paths root could write anyway */
const NOBODY = 65532;
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** strata's environment without STRATA_ settings */
function cleanEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter(([k, v]) => !k.startsWith("STRATA_") && v !== undefined)) as Record<string, string>;
}

/** Runs strata with args until it exits (a start that should fail) and returns its exit code and stderr. */
function failedStart(args: string[], uid?: number): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, "src/main.ts"), ...args], {
    encoding: "utf8",
    env: cleanEnv(),
    timeout: 60_000,
    ...(uid !== undefined && { uid, gid: uid }),
  });
  return { status: r.status, stderr: r.stderr };
}

/** Starts strata; resolves once it says it serves, then stops it. Rejects with its stderr if it exits first. */
async function servesThenStops(args: string[]): Promise<void> {
  const child = spawn(process.execPath, [join(ROOT, "src/main.ts"), ...args], { stdio: ["ignore", "ignore", "pipe"], env: cleanEnv() });
  let stderr = "";
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on("data", (d) => {
      stderr += d;
      if (stderr.includes("serving etcd v3 API")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`strata exited (${code}) before serving: ${stderr}`)));
  });
  child.kill("SIGTERM");
  await new Promise((r) => (child.exitCode !== null ? r(null) : child.once("exit", r)));
}

const listen = async () => ["--listen", `http://127.0.0.1:${await freePort()}`, "--metrics-listen", ""];

describe("the SQLite file's directory", () => {
  test("is made when missing, mode 0700, with the directories above it (the README's /var/lib/strata/strata.db line)", async () => {
    const dir = join(work, "var", "lib", "strata");
    await servesThenStops([...(await listen()), "--backend", `sqlite://${join(dir, "strata.db")}`]);
    expect(existsSync(join(dir, "strata.db"))).toBe(true);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(work, "var")).mode & 0o777).toBe(0o700);
  }, 60_000);

  test("under a file: the path and the reason", async () => {
    const file = join(work, "a-file");
    writeFileSync(file, "");
    for (const under of [file, join(file, "deeper")]) {
      const r = failedStart([...(await listen()), "--backend", `sqlite://${join(under, "strata.db")}`]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`strata: cannot start: sqlite://${join(under, "strata.db")}: cannot create the directory ${under}: ${file} is a file, not a directory`);
    }
  });

  test("a directory this user cannot create or write in, a file it cannot write: the path, the user and the reason", async () => {
    const locked = join(work, "locked");
    mkdirSync(locked, { mode: 0o755 });
    chmodSync(work, 0o755);
    const create = failedStart([...(await listen()), "--backend", `sqlite://${join(locked, "sub", "strata.db")}`], NOBODY);
    expect(create.stderr).toContain(`cannot create the directory ${join(locked, "sub")}: permission denied (EACCES)`);
    const inDir = failedStart([...(await listen()), "--backend", `sqlite://${join(locked, "strata.db")}`], NOBODY);
    expect(inDir.stderr).toContain(`this user (uid ${NOBODY}) cannot create files in the directory ${locked}: permission denied (EACCES)`);
    // a directory it may write in, holding a database file it may not
    const open = join(work, "open");
    mkdirSync(open, { mode: 0o777 });
    chmodSync(open, 0o777);
    writeFileSync(join(open, "strata.db"), "");
    chmodSync(join(open, "strata.db"), 0o644);
    const file = failedStart([...(await listen()), "--backend", `sqlite://${join(open, "strata.db")}`], NOBODY);
    expect(file.stderr).toContain(`this user (uid ${NOBODY}) cannot read and write the file ${join(open, "strata.db")}: permission denied (EACCES)`);
    for (const r of [create, inDir, file]) {
      expect(r.status).toBe(1);
      expect(r.stderr).not.toContain("unable to open database file");
    }
  });
});

describe("kine's and k3s's flags", () => {
  const cases: [string[], string][] = [
    [["--endpoint", "postgres://kine@db/kine"], "--endpoint is kine's flag for the database; strata's is --backend postgres://kine@db/kine"],
    [["--listen-address", "tcp://0.0.0.0:2379"], "--listen-address is kine's flag; strata's is --listen http://0.0.0.0:2379"],
    [["--listen-address=:2379"], "--listen-address is kine's flag; strata's is --listen http://0.0.0.0:2379"],
    [["--ca-file", "ca.pem"], "--ca-file is kine's CA for the database connection; strata's TLS to a database is set in the --backend URL"],
    [["--server-cert-file", "s.pem"], "--server-cert-file is kine's; strata's is --cert-file"],
    [["--metrics-bind-address", ":8080"], "--metrics-bind-address is kine's; strata's is --metrics-listen http://0.0.0.0:8080"],
    [["--datastore-endpoint", "mysql://k3s:pw@db:3306/k3s"], "--datastore-endpoint is k3s's flag for the datastore k3s uses: give k3s --datastore-endpoint=http://STRATA_HOST:2379; strata's own database is --backend mysql://k3s:pw@db:3306/k3s"],
    [["--datastore-cafile", "ca.pem"], "--datastore-cafile is k3s's CA for its datastore: on strata the certificate served is --cert-file and --key-file"],
    [["--datastore-certfile", "c.pem"], "--datastore-certfile is k3s's client certificate: strata checks it with --trusted-ca-file and --client-cert-auth"],
  ];
  test.each(cases)("%p is answered with strata's flag", (args, hint) => {
    const r = failedStart(args);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`strata: configuration error: ${hint}`);
    expect(r.stderr).not.toContain("Unknown option");
  });
});

describe("a PostgreSQL role without rights on strata's tables", () => {
  test("is told permission denied, naming the role and the table, not that the relation already exists", async () => {
    const url = await freshDatabase("postgres", work);
    // the owner makes the schema
    await servesThenStops([...(await listen()), "--backend", url]);
    const owner = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await owner.unsafe("DROP ROLE IF EXISTS strata_reader; CREATE ROLE strata_reader LOGIN");
    } finally {
      await owner.end();
    }
    const limited = url.replace("postgres://postgres@", "postgres://strata_reader@");
    const r = failedStart([...(await listen()), "--backend", limited]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("permission denied: the database role strata_reader lacks rights on table meta");
    expect(r.stderr).toContain("grant it SELECT, INSERT, UPDATE and DELETE on strata's tables, or connect as their owner");
    expect(r.stderr).not.toContain("already exists");
  }, 90_000);
});
