// Unary gRPC calls served straight on the HTTP/2 request: read one length-prefixed
// message, decode it, call the service, answer with one message and grpc-status in the
// trailers. Connect's per-call pipeline of async iterables cost more CPU than the KV call
// itself (point gets ran at half the rate through it). Streams, compressed or non-protobuf
// requests and unknown paths still go to Connect, which answers them as before; the
// protocol errors here are worded as Connect words them.
import { create, type DescMessage, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import {
  DeleteRangeResponseSchema,
  PutResponseSchema,
  RangeResponseSchema,
  TxnResponseSchema,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { toConnectError } from "./errors.ts";
import { GRPC_CONTENT_TYPE, type GrpcCall } from "./grpc-call.ts";
import { arrivedIn } from "./limits.ts";
import type { H2Stream } from "./h2/stream.ts";
import { grpcFrameBuffer, type RangeAnswer, rangeFrame } from "./range-frame.ts";
import { decodeRequest } from "./request-decoding.ts";
import { deleteRangeFrame, putFrame, txnFrame } from "./response-encoding.ts";
import { BUDGETED_REQUESTS, type Reservation, type ResponseBudget } from "./response-budget.ts";

/** what a handler may ask of its call besides the request (a part of Connect's HandlerContext) */
export interface UnaryContext {
  /** the time left before the client's deadline (grpc-timeout), if it set one */
  timeoutMs(): number | undefined;
  /** what the server knows of the call (its caller: caller.ts) */
  values: ContextValues;
}

export interface UnaryMethod {
  input: DescMessage;
  call: (request: unknown, ctx: UnaryContext) => Promise<unknown>;
  /** the answer as a gRPC frame, in pieces */
  frame: (answer: unknown) => Uint8Array[];
  /** for requests whose answer may be large: their kind in the response budget */
  kind?: (request: unknown) => string | undefined;
  /** bytes of the answer that are its alone, let go of once the call is over (OWN_BYTES) */
  own?: (answer: unknown) => Uint8Array | undefined;
}

/** answers encoded by hand, for speed: lists can hold hundreds of megabytes, and writes are Kubernetes' every change */
const FRAMES = new Map<DescMessage, (answer: never) => Uint8Array[]>([
  [RangeResponseSchema, rangeFrame],
  [TxnResponseSchema, txnFrame],
  [PutResponseSchema, putFrame],
  [DeleteRangeResponseSchema, deleteRangeFrame],
]);

/**
 * A Range answer's key-values encoded by a read thread: a buffer handed over whole for this
 * one answer (RangeQuery.encode in mvcc/types.ts). Let go of once sent, it is freed at once
 * instead of at the next collection: a list of 40 MB left that much garbage on the event
 * loop, which made memory-pressure.ts collect every other list.
 */
const OWN_BYTES = new Map<DescMessage, (answer: never) => Uint8Array | undefined>([
  [RangeResponseSchema, (a: RangeAnswer) => a.encodedKvs],
]);

function genericFrame(schema: DescMessage): (answer: unknown) => Uint8Array[] {
  return (answer) => {
    const bytes = toBinary(schema, create(schema, answer as never));
    const frame = grpcFrameBuffer(bytes.length);
    frame.set(bytes, 5);
    return [frame];
  };
}

/** The unary methods of `services` by request path; `calls` replace the services' own by path. */
export function unaryMethods(services: Array<[DescService, object]>, calls = new Map<string, (r: never) => Promise<unknown>>()): Map<string, UnaryMethod> {
  const methods = new Map<string, UnaryMethod>();
  for (const [service, impl] of services) {
    for (const m of service.methods) {
      if (m.methodKind !== "unary") continue;
      const fn = (impl as Record<string, (r: unknown, ctx: UnaryContext) => Promise<unknown>>)[m.localName];
      if (!fn) continue;
      const frame = (FRAMES.get(m.output) ?? genericFrame(m.output)) as (answer: unknown) => Uint8Array[];
      const path = `/${service.typeName}/${m.name}`;
      const call = (calls.get(path) as ((r: unknown, ctx: UnaryContext) => Promise<unknown>) | undefined) ?? fn.bind(impl);
      const kind = BUDGETED_REQUESTS.get(m.input) as ((request: unknown) => string | undefined) | undefined;
      const own = OWN_BYTES.get(m.output) as UnaryMethod["own"];
      methods.set(path, { input: m.input, call, frame, kind, own });
    }
  }
  return methods;
}

/** Whether this path's request can be served here (uncompressed protobuf), not by Connect. */
export function servesUnary(stream: H2Stream): boolean {
  const type = stream.headers["content-type"];
  const encoding = stream.headers["grpc-encoding"];
  return stream.method === "POST" && (type === "application/grpc" || type === GRPC_CONTENT_TYPE) &&
    (encoding === undefined || encoding === "identity");
}

/**
 * Serves one unary call; `onRequest` sees the decoded request (the slow-request log keeps
 * it). A request whose answer may be large waits for room in `budget`, and holds its
 * answer's bytes there until the stream has sent them (or closed).
 */
export async function serveUnary(
  method: UnaryMethod,
  call: GrpcCall,
  readMaxBytes: number,
  budget: ResponseBudget,
  onRequest: (message: unknown) => void,
  values: ContextValues,
): Promise<void> {
  let frame: Uint8Array[];
  let own: Uint8Array | undefined;
  let reservation: Reservation | undefined;
  // the client's deadline counts from when its request arrived
  const timeout = grpcTimeoutMs(call.stream.headers["grpc-timeout"]);
  const deadline = timeout === undefined ? undefined : Date.now() + timeout;
  const ctx: UnaryContext = { timeoutMs: () => (deadline === undefined ? undefined : deadline - Date.now()), values };
  try {
    const message = await readMessage(call.stream, readMaxBytes);
    const request = fromEnvelope(method.input, message);
    arrivedIn(request as object, message.length);
    onRequest(request);
    const kind = method.kind?.(request);
    if (kind !== undefined) {
      const s = call.stream;
      reservation = (!s.closed && !s.clientNotReading && budget.admitNow(kind)) || await budget.admit(kind, s, () => s.clientNotReading);
    }
    const answer = await method.call(request, ctx);
    frame = method.frame(answer);
    own = method.own?.(answer);
  } catch (err) {
    reservation?.release();
    const e = err instanceof ConnectError ? err : toConnectError(err);
    return call.fail(e.code, e.rawMessage);
  }
  if (reservation) {
    reservation.settle(frame.reduce((n, piece) => n + piece.length, 0));
    reservation.holdUntilSent(call.stream);
  }
  call.answer(frame);
  if (own) letGoOnceOver(call.stream, own);
}

/**
 * Frees `bytes`' memory (detaching its ArrayBuffer) once the stream is over: sent, or
 * dropped. A turn later, as the connection copies each DATA frame's piece of a chunk into
 * its socket write at the end of the same synchronous flush that may end the stream.
 */
function letGoOnceOver(stream: H2Stream, bytes: Uint8Array): void {
  const buffer = bytes.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer };
  // only a buffer that is all of it: never memory shared with anything else
  if (bytes.byteOffset !== 0 || bytes.byteLength !== buffer.byteLength || !buffer.transfer) return;
  stream.onClose(() => queueMicrotask(() => buffer.transfer!(0)));
}

const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** gRPC's grpc-timeout header ("100m", "5S", …) in milliseconds; undefined when absent or malformed */
export function grpcTimeoutMs(header: string | undefined): number | undefined {
  const m = header === undefined ? null : /^(\d{1,8})([HMSmun])$/.exec(header);
  return m ? Number(m[1]) * TIMEOUT_UNIT_MS[m[2]!]! : undefined;
}

/** The request; the KV requests in their plain form are decoded by hand (request-decoding.ts), the rest by protobuf-es. */
export function fromEnvelope(schema: DescMessage, bytes: Uint8Array): unknown {
  const decoded = decodeRequest(schema, bytes);
  if (decoded !== undefined) return decoded;
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new ConnectError(`grpc: error unmarshalling request: ${(err as Error).message}`, Code.Internal);
  }
}

/**
 * The request's one message. An oversized one is refused as soon as its length prefix is
 * read, as grpc-go does (etcd answers at once): the answer ends the stream, and the
 * connection drops the rest of the body as it comes.
 */
export async function readMessage(stream: H2Stream, maxBytes: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let received = 0;
  // the body as it comes, without an async generator: usually whole by the first wait
  for (;;) {
    for (const chunk of stream.takeReceived()) {
      const before = received;
      chunks.push(chunk);
      received += chunk.length;
      if (before < 5 && received >= 5) {
        const head = concat(chunks, received);
        const size = ((head[1]! << 24) | (head[2]! << 16) | (head[3]! << 8) | head[4]!) >>> 0;
        if (size > maxBytes) throw new ConnectError(`grpc: received message larger than max (${size} vs. ${maxBytes})`, Code.ResourceExhausted);
      }
      // a second message is refused once the body is over (below); one too large for any is not waited for
      if (received > 2 * (5 + maxBytes)) throw new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented);
    }
    if (stream.bodyEnded) break;
    await stream.arrival();
  }
  if (stream.closed && !stream.remoteClosed) throw new ConnectError("the client cancelled the call", Code.Canceled);
  const body = Buffer.from(concat(chunks, received));
  if (body.length === 0) throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
  if (body.length < 5) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  const size = body.readUInt32BE(1);
  if (body.length < 5 + size) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  const rest = body.length - 5 - size;
  if (rest > 0) {
    // a second message, whole or cut short
    const whole = rest >= 5 && rest >= 5 + body.readUInt32BE(5 + size + 1);
    throw whole
      ? new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented)
      : new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  }
  if (body[0]! & 1) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
  return body.subarray(5);
}

function concat(chunks: Uint8Array[], bytes: number): Uint8Array {
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes);
}
