// The client port serves gRPC and HTTP/1.1 on one listener, as etcd's does (cmux): a
// connection that opens with the HTTP/2 preface ("PRI * HTTP/2.0…", cleartext with prior
// knowledge, or TLS with ALPN "h2") goes to the HTTP/2 server; anything else is taken for
// HTTP/1.1. Only the preface's 24 bytes are ever held, and a connection that sends
// nothing is dropped after the same time an HTTP/2 client has to send its preface.
import type { Socket } from "node:net";
import { PREFACE } from "../h2/frames.ts";
import type { ServerConnection as ServedConnection } from "../h2/server.ts";

/** a connection that has not sent its first bytes by then is dropped */
const FIRST_BYTES_TIMEOUT_MS = 10_000;

export type Adopt = (socket: Socket) => ServedConnection;

/** The connection on `socket`, once its first bytes say which protocol it speaks. */
export function sniffProtocol(socket: Socket, http2: Adopt, http1: Adopt): ServedConnection {
  return new SniffedConnection(socket, http2, http1);
}

class SniffedConnection implements ServedConnection {
  private inner: ServedConnection | undefined;
  private readonly listeners: Array<() => void> = [];
  private closed = false;

  constructor(private readonly socket: Socket, http2: Adopt, http1: Adopt) {
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), FIRST_BYTES_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const n = Math.min(head.length, PREFACE.length);
      const prefaceSoFar = head.compare(PREFACE, 0, n, 0, n) === 0;
      if (prefaceSoFar && head.length < PREFACE.length) return;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onEarlyClose);
      // the bytes read go back to the socket for the protocol's own reader
      socket.pause();
      socket.unshift(head);
      this.inner = prefaceSoFar ? http2(socket) : http1(socket);
      for (const l of this.listeners.splice(0)) this.inner.onClose(l);
      socket.resume();
    };
    const onEarlyClose = () => {
      clearTimeout(timer);
      this.closed = true;
      for (const l of this.listeners.splice(0)) l();
    };
    socket.on("data", onData);
    socket.on("close", onEarlyClose);
    socket.on("error", () => socket.destroy());
  }

  onClose(listener: () => void): void {
    if (this.inner) this.inner.onClose(listener);
    else if (this.closed) listener();
    else this.listeners.push(listener);
  }

  heldBytes(): number {
    return this.inner?.heldBytes?.() ?? 0;
  }

  goAway(): void {
    // nothing is under way on a connection that has not spoken yet
    if (this.inner) this.inner.goAway();
    else this.socket.destroy();
  }

  destroy(): void {
    if (this.inner) this.inner.destroy();
    else this.socket.destroy();
  }
}
