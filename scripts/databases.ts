// Real database servers for tests and development, on loopback, in temporary
// directories: PostgreSQL, MariaDB and NATS (with JetStream) from Debian's packages.
//   bun scripts/databases.ts postgres   # prints the URL, stops on Ctrl-C
//   bun scripts/databases.ts mariadb
//   bun scripts/databases.ts nats
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface DatabaseServer {
  /** the strata backend URL */
  url: string;
  /** creates an empty database on the server; resolves to its backend URL */
  createDatabase(name: string): string;
  /** stops the server, keeping its data (start() brings it back on the same port) */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** stops it and removes its data */
  destroy(): Promise<void>;
  /** the file the server logs to: every statement, when started with logStatements */
  log?: string;
  /** with TLS: the server's self-signed certificate, which clients may verify it against */
  certFile?: string;
}

/** ports this process handed out: a port closed again can be the next one the system gives */
const handedOut = new Set<number>();

/** A free loopback port, never one this process handed out before (two asked in a row could be the same). */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.listen(0, "127.0.0.1", () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolve(port));
      });
      s.on("error", reject);
    });
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

function server(
  dir: string,
  createDatabase: (name: string) => string,
  start: () => Promise<void>,
  stop: () => Promise<void>,
  files: { log?: string; certFile?: string } = {},
): DatabaseServer {
  return {
    ...files,
    url: createDatabase("strata"),
    createDatabase,
    stop,
    start,
    destroy: async () => {
      try {
        await stop();
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const run = (cmd: string, args: string[], env?: Record<string, string>) =>
  execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } }).toString();

/** run() without blocking the caller's event loop: a test's clients keep running while a server stops or starts */
const runAsync = (cmd: string, args: string[]) =>
  new Promise<string>((resolve, reject) =>
    execFile(cmd, args, (err, stdout, stderr) => (err ? reject(new Error(`${cmd}: ${err.message}${stderr}`)) : resolve(stdout)))
  );

export interface ServerOptions {
  /** serve TLS only, with a self-signed certificate; URLs then ask for TLS */
  tls?: boolean;
  /** log every statement the server receives (PostgreSQL's log_statement=all, MariaDB's general log) */
  logStatements?: boolean;
  /** PostgreSQL: server settings (-c name=value), such as default_transaction_isolation */
  settings?: Record<string, string>;
  /** NATS: the JetStream store directory (one kept from another server); it stays when the server is destroyed */
  storeDir?: string;
}

/** a self-signed certificate for 127.0.0.1 in dir: [cert, key] */
function selfSignedCert(dir: string): [string, string] {
  const cert = join(dir, "server.crt");
  const key = join(dir, "server.key");
  // the IP in subjectAltName lets clients that verify the server (NATS's) accept it as its own CA
  run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1"]);
  return [cert, key];
}

function pgBin(name: string): string {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) throw new Error("PostgreSQL is not installed (Debian package postgresql)");
  const version = readdirSync(root).sort((a, b) => Number(b) - Number(a))[0];
  return join(root, version!, "bin", name);
}

export async function startPostgres(opts: ServerOptions = {}): Promise<DatabaseServer> {
  const dir = mkdtempSync(join(tmpdir(), "strata-pg-"));
  const uid = Number(run("id", ["-u", "postgres"]).trim());
  const gid = Number(run("id", ["-g", "postgres"]).trim());
  chownSync(dir, uid, gid);
  const data = join(dir, "data");
  // initdb refuses to run as root
  const asPostgres = (cmd: string, args: string[]) => run("runuser", ["-u", "postgres", "--", cmd, ...args]);
  const asPostgresAsync = (cmd: string, args: string[]) => runAsync("runuser", ["-u", "postgres", "--", cmd, ...args]);
  asPostgres(pgBin("initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]);
  let tlsOptions = "";
  if (opts.tls) {
    const [cert, key] = selfSignedCert(data);
    chownSync(cert, uid, gid);
    chownSync(key, uid, gid);
    // TCP clients must use TLS; the local socket (used to create databases) need not
    writeFileSync(join(data, "pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n");
    tlsOptions = ` -c ssl=on -c ssl_cert_file=${cert} -c ssl_key_file=${key}`;
  }
  const settings = { ...opts.settings, ...(opts.logStatements ? { log_statement: "all" } : {}) };
  const extra = Object.entries(settings).map(([k, v]) => ` -c ${k}=${v}`).join("");
  const port = await freePort();
  const start = async () => {
    await asPostgresAsync(pgBin("pg_ctl"), [
      "-D", data, "-l", join(dir, "log"), "-w", "-t", "30",
      "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200${tlsOptions}${extra}`,
      "start",
    ]);
  };
  const stop = async () => {
    await asPostgresAsync(pgBin("pg_ctl"), ["-D", data, "-m", "fast", "-w", "stop"]);
  };
  await start();
  const createDatabase = (name: string) => {
    run(pgBin("psql"), ["-h", dir, "-p", String(port), "-U", "postgres", "-c", `CREATE DATABASE ${name}`]);
    return `postgres://postgres@127.0.0.1:${port}/${name}${opts.tls ? "?sslmode=require" : ""}`;
  };
  return server(dir, createDatabase, start, stop, { log: join(dir, "log"), certFile: opts.tls ? join(data, "server.crt") : undefined });
}

export async function startMariadb(opts: ServerOptions = {}): Promise<DatabaseServer> {
  if (!existsSync("/usr/sbin/mariadbd")) throw new Error("MariaDB is not installed (Debian package mariadb-server)");
  const dir = mkdtempSync(join(tmpdir(), "strata-mariadb-"));
  const data = join(dir, "data");
  const socket = join(dir, "mariadb.sock");
  run("mariadb-install-db", ["--no-defaults", `--datadir=${data}`, "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"]);
  const tlsArgs = opts.tls ? (([cert, key]) => [`--ssl-cert=${cert}`, `--ssl-key=${key}`, "--require-secure-transport=ON"])(selfSignedCert(dir)) : [];
  const log = join(dir, "statements.log");
  const logArgs = opts.logStatements ? ["--general-log=1", `--general-log-file=${log}`] : [];
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn("/usr/sbin/mariadbd", [
      "--no-defaults", `--datadir=${data}`, `--port=${port}`, "--bind-address=127.0.0.1", `--socket=${socket}`,
      "--user=root", `--pid-file=${join(dir, "mariadb.pid")}`, "--skip-name-resolve", "--max-connections=300",
      "--innodb-buffer-pool-size=128M", "--skip-log-bin", ...tlsArgs, ...logArgs,
    ], { stdio: "ignore" });
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await runAsync("mariadb", ["--no-defaults", "-S", socket, "-u", "root", "-e", "SELECT 1"]);
        return;
      } catch {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`MariaDB did not start in ${dir}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  };
  const stop = async () => {
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child!.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  };
  await start();
  run("mariadb", ["--no-defaults", "-S", socket, "-u", "root", "-e", "CREATE USER strata@'%' IDENTIFIED BY 'strata'"]);
  const createDatabase = (name: string) => {
    run("mariadb", ["--no-defaults", "-S", socket, "-u", "root", "-e", `CREATE DATABASE ${name}; GRANT ALL ON ${name}.* TO strata@'%'`]);
    // a self-signed certificate cannot be verified: encrypt without verifying
    return `mysql://strata:strata@127.0.0.1:${port}/${name}${opts.tls ? "?ssl=skip-verify" : ""}`;
  };
  return server(dir, createDatabase, start, stop, {
    log: opts.logStatements ? log : undefined,
    certFile: opts.tls ? join(dir, "server.crt") : undefined,
  });
}

/** nats-server with JetStream; each "database" is a bucket (a stream of its own) */
export async function startNats(opts: ServerOptions = {}): Promise<DatabaseServer> {
  if (!existsSync("/usr/sbin/nats-server")) throw new Error("NATS is not installed (Debian package nats-server)");
  const dir = mkdtempSync(join(tmpdir(), "strata-nats-server-"));
  const [cert, key] = opts.tls ? selfSignedCert(dir) : [];
  const tlsArgs = opts.tls ? ["--tls", "--tlscert", cert!, "--tlskey", key!] : [];
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    const c = spawn("/usr/sbin/nats-server", ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", opts.storeDir ?? join(dir, "jetstream"), ...tlsArgs], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    child = c;
    let log = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server did not start in ${dir}: ${log}`)), 30_000);
      c.stderr!.on("data", (d) => {
        log = (log + d).slice(-20_000);
        if (log.includes("Server is ready")) {
          clearTimeout(timer);
          resolve();
        }
      });
      c.once("exit", () => reject(new Error(`nats-server exited: ${log}`)));
    });
  };
  const stop = async () => {
    if (!child || child.exitCode !== null || child.signalCode) return;
    const exited = new Promise((r) => child!.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  };
  await start();
  // clients verify the server against its own certificate
  return server(dir, (name) => `nats://127.0.0.1:${port}?bucket=${name}${opts.tls ? `&ca=${cert}` : ""}`, start, stop, { certFile: cert });
}

if (import.meta.main) {
  const kind = process.argv[2];
  const starters: Record<string, () => Promise<DatabaseServer>> = { postgres: startPostgres, mariadb: startMariadb, nats: startNats };
  const starter = kind ? starters[kind] : undefined;
  if (!starter) {
    console.error("usage: bun scripts/databases.ts postgres|mariadb|nats");
    process.exit(2);
  }
  const db = await starter();
  console.log(db.url);
  const done = async () => {
    await db.destroy();
    process.exit(0);
  };
  process.on("SIGINT", done);
  process.on("SIGTERM", done);
}
