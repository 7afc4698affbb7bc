// Shutdown of the API server: the signal long-lived streams end on, and the order of
// things. Each connection gets a GOAWAY (no new calls; calls under way finish), watch and
// lease keep-alive streams end with Unavailable, which etcd clients answer by
// reconnecting, and whatever is still open at the deadline is cut.
import { Code, ConnectError } from "@connectrpc/connect";
import type { H2Server } from "./h2/server.ts";

export const SHUTTING_DOWN = "strata is shutting down";

export class Connections {
  private server: H2Server | undefined;
  private readonly stopping = new AbortController();

  /** aborted when shutdown begins: long-lived streams end then */
  get closing(): AbortSignal {
    return this.stopping.signal;
  }

  track(server: H2Server): void {
    this.server = server;
  }

  get open(): number {
    return this.server?.openConnections ?? 0;
  }

  /** Stops accepting, sends every connection a GOAWAY and ends the long-lived streams; resolves when all closed. */
  async close(): Promise<void> {
    const closed = this.server?.close();
    this.stopping.abort();
    await closed;
  }

  /** Cuts the connections that are still open. */
  destroy(): void {
    this.server?.destroy();
  }
}

export function shuttingDown(): ConnectError {
  return new ConnectError(SHUTTING_DOWN, Code.Unavailable);
}

/** A stream's requests until shutdown begins; then the stream ends with Unavailable. */
export async function* untilShutdown<T>(requests: AsyncIterable<T>, closing: AbortSignal): AsyncGenerator<T> {
  const it = requests[Symbol.asyncIterator]();
  let stop = () => {};
  const stopped = new Promise<"stopped">((resolve) => (stop = () => resolve("stopped")));
  if (closing.aborted) stop();
  closing.addEventListener("abort", stop);
  try {
    for (;;) {
      const next = await Promise.race([it.next(), stopped]);
      if (next === "stopped") throw shuttingDown();
      if (next.done) return;
      yield next.value;
    }
  } finally {
    closing.removeEventListener("abort", stop);
  }
}
