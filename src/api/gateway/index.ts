// The client port's plain HTTP beside gRPC (HTTP/1.1 and HTTP/2): what the rest of src/api uses.
import type { Socket } from "node:net";
import type { H2Stream } from "../h2/stream.ts";
import type { Observer } from "../../observe/observer.ts";
import { clientPortApp } from "./app.ts";
import { serveHttpOnStream } from "./h2-exchange.ts";
import { Http1Server } from "./http1.ts";
import type { GatewayParts } from "./json-gateway.ts";
import type { ServerConnection as ServedConnection } from "../h2/server.ts";
import { type Adopt, sniffProtocol } from "./sniff.ts";

export type { GatewayParts } from "./json-gateway.ts";


export interface ClientPortHttp {
  /** the connection on a newly accepted socket: HTTP/2 through `http2`, anything else HTTP/1.1 here */
  accept(socket: Socket, http2: Adopt): ServedConnection;
  /** a request on an HTTP/2 stream that is not gRPC */
  serveStream(stream: H2Stream): Promise<void>;
}

/** `stalledMs`: an HTTP/1.1 answer its client has not taken for this long is cut (0: never), as HTTP/2 streams are reset */
export function clientPortHttp(observer: Observer, gateway: GatewayParts, tls: boolean, stalledMs: number): ClientPortHttp {
  const fetch = clientPortApp(observer, gateway).fetch;
  const scheme = tls ? "https" : "http";
  const http1 = new Http1Server(fetch, scheme, stalledMs);
  return {
    accept: (socket, http2) => sniffProtocol(socket, http2, http1.adopt),
    // the promise: an HTTP/2 stream reset by its client counts against the connection's limit until this ends
    serveStream: (stream) => serveHttpOnStream(stream, fetch, scheme),
  };
}

/** Whether an HTTP/2 request is a gRPC call (else plain HTTP for the gateway). */
export function isGrpc(stream: H2Stream): boolean {
  return (stream.headers["content-type"] ?? "").startsWith("application/grpc");
}
