// etcdserverpb.KV.RangeStream (etcd 3.7): a Range's request answered in chunks read at one
// revision (keyspace/range-stream.ts). A chunk is read only once the one before is written
// and the stream has room again, so a client that reads slowly holds back only its own
// stream and holds about one chunk; and each chunk's read is admitted against the response
// budget as a Range's answer is (response-budget.ts), so many streams at once wait their
// turn instead of all reading together; a chunk's share is held until its bytes went out.
// Served straight on the HTTP/2 stream, the chunks framed by hand (range-stream-frame.ts) from key-values the read may have encoded; through
// Connect for requests that path does not take (compressed ones).
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError, type HandlerContext } from "@connectrpc/connect";
import { type RangeRequest, RangeRequestSchema, type RangeStreamResponseSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Keyspace, RangeChunk, RangeStreams } from "../keyspace/contract.ts";
import { requestDeadline } from "../mvcc/deadline.ts";
import type { AuthStore } from "./auth-store.ts";
import { type Caller, caller } from "./caller.ts";
import { checkRangeStream } from "./checks.ts";
import { shuttingDown } from "./connections.ts";
import { toConnectError } from "./errors.ts";
import { type GrpcCall, OK_HEADERS, OK_TRAILERS } from "./grpc-call.ts";
import { header, type ServerIdentity } from "./header.ts";
import { rangeStreamFrame } from "./range-stream-frame.ts";
import { rangeKind, type Reservation, type ResponseBudget } from "./response-budget.ts";
import { fromEnvelope, grpcTimeoutMs, readMessage } from "./unary.ts";

export const RANGE_STREAM_PATH = "/etcdserverpb.KV/RangeStream";

/** What every RangeStream call shares. */
export interface RangeStreamParts {
  keyspace: Keyspace & RangeStreams;
  id: ServerIdentity;
  budget: ResponseBudget;
  /** the bytes a chunk aims at: etcd aims at its max-request-bytes */
  chunkBytes: number;
  /** aborted when strata shuts down: streams under way end with Unavailable between chunks */
  closing: AbortSignal;
  /** the caller's read permission, checked as for a Range */
  auth: AuthStore;
}

/** The call served on its HTTP/2 stream: one request message, then chunk after chunk as the client takes them. */
export async function serveRangeStream(p: RangeStreamParts, call: GrpcCall, readMaxBytes: number, who: Caller): Promise<void> {
  const s = call.stream;
  // the client's deadline counts from when its request arrived
  const timeout = grpcTimeoutMs(s.headers["grpc-timeout"]);
  const deadline = timeout === undefined ? undefined : Date.now() + timeout;
  try {
    const r = fromEnvelope(RangeRequestSchema, await readMessage(s, readMaxBytes)) as RangeRequest;
    checkRangeStream(r);
    p.auth.checkRange(p.auth.identify(who), r.key, r.rangeEnd);
    const timeoutMs = () => (deadline === undefined ? undefined : deadline - Date.now());
    for await (const [chunk, reservation] of admittedChunks(p, r, s.signal, timeoutMs, true)) {
      // the chunk's bytes count until they went out or were dropped with the stream
      reservation?.holdUntilSent(s);
      if (s.closed) return;
      s.respond(OK_HEADERS);
      for (const piece of rangeStreamFrame(chunk, p.id)) s.write(piece);
      await s.room();
    }
  } catch (err) {
    const e = err instanceof ConnectError ? err : toConnectError(err);
    return call.fail(e.code, e.rawMessage);
  }
  call.end(OK_TRAILERS);
}

/** The same call through Connect (its serializer encodes the chunks; it writes each when the stream has room). */
export function rangeStreamHandler(p: RangeStreamParts) {
  return async function* rangeStream(r: RangeRequest, ctx: HandlerContext): AsyncGenerator<MessageInitShape<typeof RangeStreamResponseSchema>> {
    try {
      checkRangeStream(r);
      p.auth.checkRange(p.auth.identify(caller(ctx)), r.key, r.rangeEnd);
      for await (const [c, reservation] of admittedChunks(p, r, ctx.signal, () => ctx.timeoutMs(), false)) {
        const end = c.end && { header: header(p.id, c.end.revision), more: c.end.more, count: c.end.count };
        // Connect asks for the next chunk once this one is written and the stream has room
        try {
          yield { rangeResponse: { kvs: c.kvs, ...end } };
        } finally {
          reservation?.release();
        }
      }
    } catch (err) {
      throw toConnectError(err);
    }
  };
}

/**
 * The chunks of one call, each read once the caller asks for it: it asks when the one
 * before is written and the stream has room. Each comes with its share of the response
 * budget, settled to its size, which the caller releases. A count or one key is not
 * budgeted, as in Range.
 */
async function* admittedChunks(
  p: RangeStreamParts,
  r: RangeRequest,
  signal: AbortSignal,
  timeoutMs: () => number | undefined,
  /** the chunks are framed by hand, so they may come encoded (RangeOptions.encodedKvs in keyspace/contract.ts) */
  encodedKvs: boolean,
): AsyncGenerator<[RangeChunk, Reservation | undefined]> {
  const kind = rangeKind(r);
  const chunks = p.keyspace.rangeStream(r, { deadline: () => requestDeadline(timeoutMs()), chunkBytes: p.chunkBytes, encodedKvs });
  try {
    for (;;) {
      // the client reconnects, to another strata if it knows one, and lists again
      if (p.closing.aborted) throw shuttingDown();
      const reservation = kind === undefined ? undefined : await p.budget.admit(`stream ${kind}`, signal);
      let next: IteratorResult<RangeChunk>;
      try {
        next = await chunks.next();
      } catch (err) {
        reservation?.release();
        throw err;
      }
      if (next.done) {
        reservation?.release();
        return;
      }
      reservation?.settle(chunkBytes(next.value));
      yield [next.value, reservation];
      if (next.value.end) return;
    }
  } finally {
    await chunks.return(undefined);
  }
}

function chunkBytes(c: RangeChunk): number {
  if (c.encodedKvs) return c.encodedKvs.length;
  let n = 0;
  for (const kv of c.kvs) n += kv.key.length + kv.value.length;
  return n;
}
