// One gRPC call on an HTTP/2 stream: the response's headers, length-prefixed messages and
// the status in trailers (or in the headers alone when no message was sent, as gRPC's
// "trailers-only" answer). Every call ends through here, so its status is counted once.
import { constantHeaders, type HeaderList } from "./h2/hpack.ts";
import type { H2Stream } from "./h2/stream.ts";
import { grpcPercentEncode } from "./grpc-status.ts";

export const GRPC_CONTENT_TYPE = "application/grpc+proto";
/** a successful call's headers and trailers, the same on every call (encoded once) */
export const OK_HEADERS = constantHeaders([[":status", "200"], ["content-type", GRPC_CONTENT_TYPE]]);
export const OK_TRAILERS = constantHeaders([["grpc-status", "0"]]);

export class GrpcCall {
  constructor(
    readonly stream: H2Stream,
    /** told the grpc-status the call ends with */
    private readonly onStatus: (code: string) => void,
  ) {}

  /** Sends the response headers, then `message` (a whole gRPC frame, in pieces), then status OK. */
  answer(message: Uint8Array[]): void {
    this.stream.respond(OK_HEADERS);
    for (const piece of message) this.stream.write(piece);
    this.end(OK_TRAILERS);
  }

  /** Ends the call with a status and message, as trailers (or trailers-only). */
  fail(code: number, message: string): void {
    const trailers: HeaderList = [["grpc-status", String(code)], ["grpc-message", grpcPercentEncode(message)]];
    if (!this.stream.headersSent) trailers.unshift([":status", "200"], ["content-type", GRPC_CONTENT_TYPE]);
    this.end(trailers);
  }

  /** Ends the call with these trailers. */
  end(trailers: HeaderList): void {
    if (this.stream.closed) return;
    // a successful call's trailers are the one constant list: no search for its status
    const status = trailers === OK_TRAILERS ? "0" : trailers.find(([name]) => name === "grpc-status")?.[1];
    if (status !== undefined) this.onStatus(status);
    this.stream.end(trailers);
  }
}
