// etcdserverpb.Watch served straight on its HTTP/2 stream, as unary calls and RangeStream
// are: request messages read off the stream's body, each response framed by hand
// (watch-encoding.ts) and written as it is queued while the stream has room, else once it
// has (a client that stops reading holds back only its own stream, whose queue in watch.ts
// then stops taking events).
// Connect's per-call pipeline (a chain of async generators, abort controllers and
// listeners for every call) cost more than the watchers themselves when many streams are
// opened; Connect still serves what this path does not take (compressed requests).
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { type WatchRequest, WatchRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Caller } from "./caller.ts";
import { shuttingDown } from "./connections.ts";
import { toConnectError } from "./errors.ts";
import { type GrpcCall, OK_HEADERS, OK_TRAILERS } from "./grpc-call.ts";
import type { WatchResponseOut } from "../keyspace/contract.ts";
import type { H2Stream } from "./h2/stream.ts";
import { type ClientStream, type ResponseWriter, unparsable, type WatchCalls } from "./watch.ts";

export const WATCH_PATH = "/etcdserverpb.Watch/Watch";

export async function serveWatch(calls: WatchCalls, call: GrpcCall, readMaxBytes: number, who: Caller): Promise<void> {
  const s = call.stream;
  const stream = calls.start(who);
  void readRequests(s, readMaxBytes, stream);
  try {
    await stream.deliver(new StreamWriter(s, calls), s.signal, calls.closing);
  } catch (err) {
    const e = toConnectError(err);
    return call.fail(e.code, e.rawMessage);
  } finally {
    calls.finish(stream);
  }
  // the client reconnects, to another strata if it knows one
  if (calls.closing.aborted) {
    const e = shuttingDown();
    return call.fail(e.code, e.rawMessage);
  }
  // otherwise the client went away: the stream is closed and nothing is sent
  call.end(OK_TRAILERS);
}

/** Responses framed onto the HTTP/2 stream (a class: one object per stream, not a closure per method). */
class StreamWriter implements ResponseWriter {
  constructor(private readonly s: H2Stream, private readonly calls: WatchCalls) {}

  write(r: WatchResponseOut): boolean {
    // headers go with the first response, as Connect sends them
    if (!this.s.headersSent) this.s.respond(OK_HEADERS);
    this.s.write(this.calls.frame(r));
    return this.s.hasRoom();
  }

  room(): Promise<void> {
    return this.s.room();
  }
}

/**
 * The client's requests, carried out as they arrive (no generator between the body and
 * the stream: one less suspended task per stream). One announcing more than the server
 * takes is refused at its prefix, as grpc-go refuses it; one that is not a WatchRequest
 * ends the stream with grpc-go's error (watch.ts sends it after the responses queued before).
 */
async function readRequests(s: H2Stream, maxBytes: number, stream: ClientStream): Promise<void> {
  try {
    let pending: Uint8Array = new Uint8Array(0);
    for await (const chunk of s.body()) {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 5) {
        const size = new DataView(pending.buffer, pending.byteOffset + 1, 4).getUint32(0);
        if (size > maxBytes) throw new ConnectError(`grpc: received message larger than max (${size} vs. ${maxBytes})`, Code.ResourceExhausted);
        if (pending.length < 5 + size) break;
        if (pending[0]! & 1) throw new ConnectError("grpc: compressed flag set with identity or empty encoding", Code.Internal);
        const message = pending.subarray(5, 5 + size);
        pending = pending.subarray(5 + size);
        let request: WatchRequest;
        try {
          request = fromBinary(WatchRequestSchema, message);
        } catch (err) {
          throw unparsable((err as Error).message);
        }
        if (!(await stream.take(request))) return;
      }
    }
  } catch (err) {
    stream.requestsFailed(err);
  }
}
