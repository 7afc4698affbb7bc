// The servers a per-operation benchmark compares (main.ts, check-perf.ts): strata on a fresh
// SQLite file started from a source tree (this one, or a baseline for an A/B), and a real
// etcd; either pinned to core 0, every thread, so the client can have core 1.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { startEtcd } from "../../test/support/etcd.ts";
import { freePort } from "../../test/support/strata.ts";

export interface BenchServer {
  endpoint: string;
  pid: number;
  stop(): Promise<void>;
}

export interface Target {
  name: string;
  start(): Promise<BenchServer>;
}

export interface StrataOptions {
  /** on core 0 from its first thread */
  pinned: boolean;
  /** before the entry point: Bun's own flags (a CPU profile) */
  bunArgs?: string[];
  /** after `serve --listen --backend --metrics-listen` */
  serveArgs?: string[];
  /** how many of its warnings and errors to print when it stops */
  logLines?: number;
}

/** strata on a fresh SQLite database, started from the sources in root */
export function strataTarget(name: string, root: string, o: StrataOptions): Target {
  return {
    name,
    async start() {
      const dir = mkdtempSync(join(tmpdir(), "strata-bench-"));
      const endpoint = `127.0.0.1:${await freePort()}`;
      const args = [
        ...(o.bunArgs ?? []),
        join(root, "src/main.ts"), "serve",
        "--listen", `http://${endpoint}`,
        "--backend", `sqlite://${join(dir, "strata.db")}`,
        "--metrics-listen", `http://127.0.0.1:${await freePort()}`,
        ...(o.serveArgs ?? []),
      ];
      const cmd = o.pinned ? ["taskset", "-c", "0", process.execPath, ...args] : [process.execPath, ...args];
      const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
      let err = "";
      child.stderr!.on("data", (d) => (err = (err + d).slice(-20_000)));
      await ready(endpoint, child, () => err);
      return {
        endpoint,
        pid: child.pid!,
        stop: async () => {
          const said = err.split("\n").filter((l) => /"level":"(warn|error)"|panic|error:/.test(l) && !/took too long/.test(l));
          if (said.length > 0) console.log(`  ${name} logged:\n${said.slice(-(o.logLines ?? 10)).join("\n")}`);
          if (child.exitCode === null) {
            child.kill("SIGTERM");
            await new Promise((r) => child.once("exit", r));
          }
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

/** ready once a client can read from it; fails at once if it exits */
async function ready(endpoint: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && child.exitCode === null) {
    const c = new Etcd3({ hosts: endpoint, dialTimeout: 500 });
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

/** a real etcd 3.4 on a fresh data directory */
export function etcdTarget(pinned: boolean): Target {
  return {
    name: "etcd",
    async start() {
      const etcd = await startEtcd();
      // every thread it has now; the ones it starts later inherit the mask
      if (pinned) spawnSync("taskset", ["-a", "-p", "-c", "0", String(etcd.pid())], { stdio: "ignore" });
      return { endpoint: etcd.endpoint, pid: etcd.pid(), stop: () => etcd.stop() };
    },
  };
}

/** user + system CPU time of a whole process (every thread), in ms */
export function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks of 10 ms
}
