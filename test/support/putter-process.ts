// Runs putter.ts (a small put every 50 ms) in its own process and collects its latencies,
// so a test measures the server's latency, not its own event loop's.
import { spawn } from "node:child_process";
import { resolve } from "node:path";

export interface PutterProcess {
  /** resolves once the first puts (which connect) are done and it puts steadily */
  steady(): Promise<void>;
  /** ends the putter; the latencies (ms) of the puts made since steady(), including the one in flight */
  stop(): Promise<number[]>;
}

export function startPutter(endpoint: string): PutterProcess {
  const putter = spawn(process.execPath, [resolve(import.meta.dir, "putter.ts"), endpoint], { stdio: ["pipe", "pipe", "inherit"] });
  const latencies: number[] = [];
  let counting = false;
  let out = "";
  putter.stdout!.on("data", (d) => {
    out += d;
    const lines = out.split("\n");
    out = lines.pop()!;
    if (counting) latencies.push(...lines.map(Number));
  });
  return {
    async steady() {
      await new Promise((r) => setTimeout(r, 1000));
      counting = true;
    },
    async stop() {
      putter.stdin!.end();
      await new Promise((r) => putter.once("exit", r));
      counting = false;
      return latencies;
    },
  };
}
