// Starts strata as a child process on a free loopback port with a fresh SQLite file.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Etcd3 } from "etcd3";

const ROOT = resolve(import.meta.dir, "../..");

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

export interface StrataProcess {
  endpoint: string;
  dir: string;
  stderr(): string;
  kill(): void;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startStrata(extraArgs: string[] = []): Promise<StrataProcess> {
  const dir = mkdtempSync(join(tmpdir(), "strata-test-"));
  const port = await freePort();
  const endpoint = `127.0.0.1:${port}`;
  let child: ChildProcess;
  let err = "";
  const launch = async () => {
    child = spawn(process.execPath, [
      join(ROOT, "src/main.ts"),
      "serve",
      "--listen",
      `http://${endpoint}`,
      "--backend",
      `sqlite://${join(dir, "strata.db")}`,
      ...extraArgs,
    ], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr!.on("data", (d) => (err += d));
    await waitReady(endpoint, () => err);
  };
  await launch();
  const exited = () => new Promise<void>((r) => (child.exitCode !== null || child.signalCode ? r() : child.once("exit", () => r())));
  return {
    endpoint,
    dir,
    stderr: () => err,
    kill: () => child.kill("SIGKILL"),
    restart: async () => {
      await exited();
      await launch();
    },
    stop: async () => {
      child.kill("SIGTERM");
      await exited();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitReady(endpoint: string, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const c = new Etcd3({ hosts: endpoint, dialTimeout: 500 } as never);
    try {
      await c.get("ready-probe").exec();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      c.close();
    }
  }
  throw new Error(`strata did not become ready on ${endpoint}: ${stderr()}`);
}
