// An HTTP/2 server on node:net or node:tls sockets (cleartext with prior knowledge, as
// gRPC clients speak it, or TLS with ALPN "h2"), handing every request stream to one
// handler. It keeps its connections so that shutdown can send each a GOAWAY, and so that
// past --max-connections a new HTTP/2 connection is answered with a GOAWAY saying why.
import * as net from "node:net";
import * as tls from "node:tls";
import { DEFAULT_H2_OPTIONS, H2Connection, type H2Options, type StreamHandler } from "./connection.ts";

/** a connection as the server keeps it: HTTP/2, or another protocol served beside it */
export interface ServerConnection {
  onClose(listener: () => void): void;
  /** bytes held for the client now, beyond the connection's fixed cost (see H2Connection) */
  heldBytes?(): number;
  goAway(): void;
  destroy(): void;
}

/** decides what a new connection speaks; `http2` serves it as HTTP/2 */
export type Accept = (socket: net.Socket, http2: (socket: net.Socket) => ServerConnection) => ServerConnection;

export interface ServerOptions extends H2Options {
  /** connections open at once (HTTP/2 and those not yet known); an HTTP/2 one past it is refused */
  maxConnections: number;
  /** told of each connection refused for maxConnections */
  onRefused: () => void;
}

export class H2Server {
  readonly listener: net.Server | tls.Server;
  private readonly connections = new Set<ServerConnection>();
  /** HTTP/2 connections refused for --max-connections since the start */
  refusedConnections = 0;

  /** `other`: takes each connection first, to serve other protocols beside HTTP/2 (HTTP/1.1) */
  constructor(onStream: StreamHandler, tlsOptions?: tls.TlsOptions, options: Partial<ServerOptions> = {}, other?: Accept) {
    const { maxConnections = Infinity, onRefused, ...h2 } = options;
    const settings = { ...DEFAULT_H2_OPTIONS, ...h2 };
    const accept = (socket: net.Socket) => {
      const refuse = this.connections.size >= maxConnections;
      const http2 = (s: net.Socket) => {
        const c = new H2Connection(s, onStream, settings);
        if (refuse) {
          // SETTINGS then GOAWAY: the client learns why and tries again later; the others are untouched
          this.refusedConnections++;
          c.goAway(`too many connections: ${maxConnections} open (--max-connections)`);
          onRefused?.();
        }
        return c;
      };
      const c = other ? other(socket, http2) : http2(socket);
      this.connections.add(c);
      c.onClose(() => this.connections.delete(c));
    };
    this.listener = tlsOptions
      ? tls.createServer({ ...tlsOptions, ALPNProtocols: other ? ["h2", "http/1.1"] : ["h2"] }, accept)
      : net.createServer({ noDelay: true }, accept);
  }

  listen(port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.listener.once("error", reject);
      this.listener.listen(port, host, () => {
        this.listener.off("error", reject);
        resolve();
      });
    });
  }

  get address(): net.AddressInfo {
    return this.listener.address() as net.AddressInfo;
  }

  get openConnections(): number {
    return this.connections.size;
  }

  /** bytes held for all connections now (for /metrics) */
  get heldBytes(): number {
    let n = 0;
    for (const c of this.connections) n += c.heldBytes?.() ?? 0;
    return n;
  }

  /** Stops accepting; every connection gets a GOAWAY and ends once its streams finish. Resolves when all ended. */
  async close(): Promise<void> {
    this.listener.close();
    await Promise.all([...this.connections].map((c) => new Promise<void>((resolve) => {
      c.onClose(resolve);
      c.goAway();
    })));
  }

  /** Cuts every connection still open. */
  destroy(): void {
    for (const c of this.connections) c.destroy();
  }
}
