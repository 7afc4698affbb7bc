// Whether each backend answers: a cheap read of its revisions, bounded by a timeout so a
// database that hangs is reported as failing rather than hanging the probe.
import type { Probe } from "../keyspace/contract.ts";

export interface BackendHealth {
  name: string;
  ok: boolean;
  /** why it failed */
  error?: string;
  /** how long the check took */
  ms: number;
}

export function checkBackends(probes: Probe[], timeoutMs: number): Promise<BackendHealth[]> {
  return Promise.all(probes.map(async (p) => {
    const start = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([p.probe(), timeout]);
      return { name: p.name, ok: true, ms: performance.now() - start };
    } catch (err) {
      return { name: p.name, ok: false, error: (err as Error).message, ms: performance.now() - start };
    } finally {
      clearTimeout(timer);
    }
  }));
}
