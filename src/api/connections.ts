// The API server's open HTTP/2 sessions and long-lived streams, so that shutdown can tell
// clients to go elsewhere: each session gets a GOAWAY (no new calls; calls under way
// finish), watch and lease keep-alive streams end with Unavailable, which etcd clients
// answer by reconnecting, and whatever is still open at the deadline is cut.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Http2Server, Http2SecureServer, ServerHttp2Session } from "node:http2";

export const SHUTTING_DOWN = "strata is shutting down";

export class Connections {
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly stopping = new AbortController();

  /** aborted when shutdown begins: long-lived streams end then */
  get closing(): AbortSignal {
    return this.stopping.signal;
  }

  track(server: Http2Server | Http2SecureServer): void {
    server.on("session", (s: ServerHttp2Session) => {
      this.sessions.add(s);
      s.once("close", () => this.sessions.delete(s));
    });
  }

  get open(): number {
    return this.sessions.size;
  }

  /** Sends every session a GOAWAY and ends the long-lived streams; resolves when all sessions closed. */
  async close(): Promise<void> {
    const closed = [...this.sessions].map((s) => new Promise<void>((resolve) => {
      if (s.closed || s.destroyed) return resolve();
      s.once("close", () => resolve());
      s.close();
    }));
    this.stopping.abort();
    await Promise.all(closed);
  }

  /** Cuts the sessions that are still open. */
  destroy(): void {
    for (const s of this.sessions) s.destroy();
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
