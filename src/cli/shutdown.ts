// What else must close when strata shuts down: any part of the process registers a closer
// here (an HTTP server, a timer, a connection), and the shutdown in cli/serve.ts runs them
// after the etcd API has stopped and before the databases close.
type Log = (level: string, msg: string, fields?: Record<string, unknown>) => void;

const closers: Array<{ name: string; close: () => void | Promise<void> }> = [];

export function onShutdown(name: string, close: () => void | Promise<void>): void {
  closers.push({ name, close });
}

/** Runs every closer, the last registered first; one that fails is logged and the rest still run. */
export async function runClosers(log: Log): Promise<void> {
  for (const c of closers.splice(0).reverse()) {
    try {
      await c.close();
    } catch (err) {
      log("error", "closing at shutdown failed", { part: c.name, error: (err as Error).message });
    }
  }
}
