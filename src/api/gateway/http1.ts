// HTTP/1.1 on the client port: node:http parses the connections the sniffer (sniff.ts)
// hands over, and each request goes to a fetch-style handler. The limits are strata's,
// not left to the runtime: the header block is bounded, a connection with no request
// under way ends after an idle time (which also bounds how slowly headers may arrive),
// a response that leaves its request body unread closes the connection (nothing is read
// and thrown away for ever), and the connections are bounded in number.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { log } from "../../util/log.ts";
import type { ServerConnection as ServedConnection } from "../h2/server.ts";
import type { FetchHandler } from "./fetch-handler.ts";

/** largest request line plus headers accepted */
export const MAX_HEADER_BYTES = 64 * 1024;
/** a connection with no request under way (or a request whose headers are not complete) ends after this */
export const IDLE_TIMEOUT_MS = 30_000;
/** HTTP/1.1 connections open at once; more are answered 503 and closed */
export const MAX_CONNECTIONS = 1000;

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer"]);

export class Http1Server {
  private readonly server;
  private readonly connections = new Map<Socket, Http1Connection>();

  constructor(private readonly fetch: FetchHandler, private readonly scheme: "http" | "https", private readonly stalledMs: number) {
    this.server = createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => void this.answer(req, res));
    // what the Keep-Alive header tells clients; the idle timer below enforces it
    this.server.keepAliveTimeout = IDLE_TIMEOUT_MS;
    this.server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
      const status = err.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request";
      if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
      else socket.destroy();
    });
  }

  get open(): number {
    return this.connections.size;
  }

  /** Serves HTTP/1.1 on `socket` (its first bytes already put back). */
  adopt = (socket: Socket): ServedConnection => {
    const c = new Http1Connection(socket, () => this.connections.delete(socket));
    if (this.connections.size >= MAX_CONNECTIONS) {
      log("warn", "HTTP/1.1 connection refused: too many open", { open: this.connections.size });
      socket.end("HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 26\r\nconnection: close\r\n\r\ntoo many open connections\n");
      return c;
    }
    this.connections.set(socket, c);
    this.server.emit("connection", socket);
    return c;
  };

  private async answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const c = this.connections.get(req.socket);
    c?.requestStarted();
    res.on("close", () => c?.requestEnded());
    const aborted = new AbortController();
    res.on("close", () => aborted.abort());
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    try {
      const response = await this.fetch(toRequest(req, this.scheme, aborted.signal));
      const headers: Record<string, string> = {};
      for (const [name, value] of response.headers) if (!HOP_BY_HOP.has(name)) headers[name] = value;
      // a body left unread would be read and dropped for as long as the client sends: close instead
      if (!req.complete || c?.goingAway) headers.connection = "close";
      res.writeHead(response.status, headers);
      if (!response.body || req.method === "HEAD") return void res.end();
      const body = (reader = response.body.getReader());
      // a client gone while its stream waits for the next message ends that wait
      res.once("close", () => void body.cancel().catch(() => {}));
      for (;;) {
        const { done, value } = await reader.read();
        if (done || res.destroyed) break;
        // each piece leaves before the next is asked for: a client that does not read holds back only itself
        if (!res.write(value)) await this.drained(res);
      }
      res.end();
    } catch (err) {
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(`${(err as Error).message}\n`);
      } else res.destroy();
    } finally {
      if (res.destroyed) void reader?.cancel().catch(() => {});
    }
  }

  /**
   * Waits until `res` took what was written; a client that takes nothing for the stall
   * timeout has its connection cut, so the bytes it holds (and their share of the response
   * budget) are dropped rather than kept for as long as it stays connected.
   */
  private drained(res: ServerResponse): Promise<void> {
    return new Promise<void>((resolve) => {
      const stalled = this.stalledMs > 0 ? setTimeout(() => res.destroy(), this.stalledMs) : undefined;
      const done = () => {
        clearTimeout(stalled);
        resolve();
      };
      res.once("drain", done);
      res.once("close", done);
    });
  }
}

class Http1Connection implements ServedConnection {
  private active = 0;
  private idle: ReturnType<typeof setTimeout> | undefined;
  goingAway = false;
  private readonly listeners: Array<() => void> = [];
  private closed = false;

  constructor(private readonly socket: Socket, onClose: () => void) {
    socket.on("close", () => {
      this.closed = true;
      clearTimeout(this.idle);
      onClose();
      for (const l of this.listeners.splice(0)) l();
    });
    this.becameIdle();
  }

  requestStarted(): void {
    this.active++;
    clearTimeout(this.idle);
  }

  requestEnded(): void {
    if (--this.active > 0) return;
    if (this.goingAway) this.socket.end();
    else this.becameIdle();
  }

  private becameIdle(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.socket.destroy(), IDLE_TIMEOUT_MS);
    this.idle.unref?.();
  }

  onClose(listener: () => void): void {
    if (this.closed) listener();
    else this.listeners.push(listener);
  }

  goAway(): void {
    this.goingAway = true;
    if (this.active === 0) this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** The request as fetch sees it; its body is read only as the handler asks for it. */
function toRequest(req: IncomingMessage, scheme: string, signal: AbortSignal): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  const url = `${scheme}://${req.headers.host ?? "localhost"}${req.url ?? "/"}`;
  if (req.method === "GET" || req.method === "HEAD") return new Request(url, { method: req.method, headers, signal });
  const it = req[Symbol.asyncIterator]();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await it.next();
      if (next.done) controller.close();
      else controller.enqueue(new Uint8Array(next.value as Buffer));
    },
    cancel() {
      void it.return?.();
    },
  }, { highWaterMark: 0 });
  return new Request(url, { method: req.method, headers, body, signal, duplex: "half" } as RequestInit);
}
