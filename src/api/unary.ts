// Unary gRPC calls served straight on the HTTP/2 request: read one length-prefixed
// message, decode it, call the service, answer with one message and grpc-status in the
// trailers. Connect's per-call pipeline of async iterables cost more CPU than the KV call
// itself (point gets ran at half the rate through it). Streams, compressed or non-protobuf
// requests and unknown paths still go to Connect, which answers them as before; the
// protocol errors here are worded as Connect words them.
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { create, type DescMessage, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { RangeResponseSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { toConnectError } from "./errors.ts";
import { grpcPercentEncode } from "./grpc-status.ts";
import { rangeFrame } from "./range-frame.ts";
import { sendInOrder } from "./send-in-order.ts";

type Handler = (req: Http2ServerRequest, res: Http2ServerResponse) => void;

interface Method {
  input: DescMessage;
  call: (request: unknown) => Promise<unknown>;
  /** the answer as a gRPC frame */
  frame: (answer: unknown) => Uint8Array;
}

/** answers encoded by hand, for speed: lists can hold hundreds of megabytes */
const FRAMES = new Map<DescMessage, (answer: never) => Uint8Array>([[RangeResponseSchema, rangeFrame]]);

function genericFrame(schema: DescMessage): (answer: unknown) => Uint8Array {
  return (answer) => {
    const bytes = toBinary(schema, create(schema, answer as never));
    const frame = new Uint8Array(5 + bytes.length);
    new DataView(frame.buffer).setUint32(1, bytes.length);
    frame.set(bytes, 5);
    return frame;
  };
}

export interface UnaryOptions {
  /** largest message accepted (etcd's max-request-bytes plus gRPC's allowance) */
  readMaxBytes: number;
  /** sees each decoded request (the slow-request log keeps it) */
  onRequest(req: Http2ServerRequest, message: unknown): void;
}

const CONTENT_TYPE = "application/grpc+proto";

/** Serves the unary methods of `services`; everything else goes to `fallback`. */
export function unaryCalls(
  services: Array<[DescService, object]>,
  opts: UnaryOptions,
  fallback: Handler,
): Handler {
  const methods = new Map<string, Method>();
  for (const [service, impl] of services) {
    for (const m of service.methods) {
      if (m.methodKind !== "unary") continue;
      const fn = (impl as Record<string, (r: unknown) => Promise<unknown>>)[m.localName];
      if (!fn) continue;
      const frame = (FRAMES.get(m.output) ?? genericFrame(m.output)) as (answer: unknown) => Uint8Array;
      methods.set(`/${service.typeName}/${m.name}`, { input: m.input, call: fn.bind(impl), frame });
    }
  }
  return (req, res) => {
    const method = methods.get(req.url);
    const type = req.headers["content-type"];
    const encoding = req.headers["grpc-encoding"];
    if (
      !method || req.method !== "POST" || (type !== "application/grpc" && type !== CONTENT_TYPE) ||
      (encoding !== undefined && encoding !== "identity")
    ) {
      return fallback(req, res);
    }
    void serve(method, req, res, opts);
  };
}

async function serve(method: Method, req: Http2ServerRequest, res: Http2ServerResponse, opts: UnaryOptions): Promise<void> {
  let frame: Uint8Array;
  try {
    const request = fromEnvelope(method.input, await readMessage(req, opts.readMaxBytes));
    opts.onRequest(req, request);
    frame = method.frame(await method.call(request));
  } catch (err) {
    return fail(res, err);
  }
  if (res.stream.destroyed) return;
  sendInOrder(req.stream.session, (done) => {
    res.once("close", done);
    if (res.stream.destroyed) return done();
    res.writeHead(200, { "content-type": CONTENT_TYPE });
    res.addTrailers({ "grpc-status": "0" });
    res.end(frame, done);
  });
}

function fail(res: Http2ServerResponse, err: unknown): void {
  if (res.stream.destroyed) return;
  const e = err instanceof ConnectError ? err : toConnectError(err);
  res.writeHead(200, { "content-type": CONTENT_TYPE });
  res.addTrailers({ "grpc-status": String(e.code), "grpc-message": grpcPercentEncode(e.rawMessage) });
  res.end();
}

function fromEnvelope(schema: DescMessage, bytes: Uint8Array): unknown {
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new ConnectError(`grpc: error unmarshalling request: ${(err as Error).message}`, Code.Internal);
  }
}

/**
 * The request's one message. An oversized one is refused as soon as its length is
 * known; the rest of the body is read and dropped so the connection's window stays open.
 */
function readMessage(req: Http2ServerRequest, maxBytes: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let refused = false;
    const refuse = (e: ConnectError) => {
      refused = true;
      chunks.length = 0;
      reject(e);
    };
    req.on("data", (chunk: Buffer) => {
      if (refused) return;
      const before = received;
      chunks.push(chunk);
      received += chunk.length;
      if (before < 5 && received >= 5) {
        const size = Buffer.concat(chunks).readUInt32BE(1);
        if (size > maxBytes) refuse(new ConnectError(`grpc: received message larger than max (${size} vs. ${maxBytes})`, Code.ResourceExhausted));
      }
    });
    req.once("error", (err) => refused || refuse(new ConnectError(String(err), Code.Canceled)));
    req.once("end", () => {
      if (refused) return;
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      if (body.length === 0) return reject(new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented));
      if (body.length < 5) return reject(new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument));
      const size = body.readUInt32BE(1);
      if (body.length < 5 + size) return reject(new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument));
      const rest = body.length - 5 - size;
      if (rest > 0) {
        // a second message, whole or cut short
        const whole = rest >= 5 && rest >= 5 + body.readUInt32BE(5 + size + 1);
        return reject(whole
          ? new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented)
          : new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument));
      }
      if (body[0]! & 1) return reject(new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal));
      resolve(body.subarray(5));
    });
  });
}
