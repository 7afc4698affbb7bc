// etcd's JSON gateway (grpc-gateway v1 as etcd configures it): POST /v3/<service>/<method>
// with the request as JSON, answered as JSON — proto field names, int64 as strings, bytes
// as base64, enums by name, fields at their default left out — and errors as
// {"error","message","code"} with grpc-gateway's HTTP status for the code. Watch,
// LeaseKeepAlive and Snapshot stream: one {"result":…} line per response.
//
// Every call goes to the same service implementations the gRPC server calls, so their
// validation, limits and errors apply alike; the caller's token (the Authorization header,
// which etcd's gateway passes on as metadata) reaches them in the call's headers.
import {
  create, type DescMessage, type DescService, fromBinary, fromJson, type JsonValue, toBinary, toJson,
} from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, createContextValues, createHandlerContext, type HandlerContext } from "@connectrpc/connect";
import { toConnectError } from "../errors.ts";
import { BUDGETED_REQUESTS, type Reservation, type ResponseBudget } from "../response-budget.ts";
import { CallSlots, releasedWithBody } from "./call-slots.ts";
import { JsonStreamError, jsonValues, parse } from "./json-stream.ts";
import { gatewayRoutes, type Route } from "./routes.ts";

export interface GatewayParts {
  /** the service implementations the gRPC server calls */
  services: Array<[DescService, object]>;
  /** bytes of JSON one request, or one message of a request stream, may carry */
  maxJsonBytes: number;
  /** large ranges wait for room in the same budget as the gRPC server's */
  budget: ResponseBudget;
  /** the values a call's context carries, from its request headers (who is calling) */
  contextValues?: (requestHeader: Headers) => ContextValues;
  /** counts a call to a gRPC path as the gRPC server counts its own; the function returned ends it with its code */
  track?: (path: string, request: unknown) => CallEnd;
  /** calls at once, at most (--max-concurrent-streams); more wait for one to end */
  maxConcurrentCalls: number;
}

/** ends a tracked call with its gRPC code (undefined: the client went away) */
type CallEnd = (code: number | undefined) => void;

const untracked: CallEnd = () => {};
/** grpc-status 0 */
const OK = 0;
/** a request's body (a stream's first message) must have arrived by then: a trickle holds no connection for ever */
export const BODY_TIMEOUT_MS = 30_000;

type Impl = (request: unknown, ctx: HandlerContext) => unknown;

const JSON_HEADERS = { "content-type": "application/json", "grpc-metadata-content-type": "application/grpc" };

/** Answers one request for `path`, the part after /v3/. */
export function jsonGateway(p: GatewayParts): (req: Request, path: string) => Promise<Response> {
  const impls = new Map(p.services.map(([service, impl]) => [service, impl as Record<string, Impl>]));
  const routes = gatewayRoutes();
  const slots = new CallSlots(p.maxConcurrentCalls);
  return async (req, path) => {
    const route = routes.get(path);
    if (!route) return text(404, "Not Found");
    if (req.method !== "POST") return text(405, "Method Not Allowed");
    const fn = impls.get(route.service)?.[route.method.localName];
    if (!fn) return errorResponse(new ConnectError(`unknown service ${route.service.typeName}`, Code.Unimplemented));
    const impl = fn.bind(impls.get(route.service));
    let release: () => void;
    try {
      release = await slots.take(req.signal);
    } catch (err) {
      return errorResponse(err);
    }
    const ctx = handlerContext(route, req, p.contextValues);
    const track = (request: unknown) => p.track?.(`/${route.service.typeName}/${route.method.name}`, request) ?? untracked;
    // the slot is held until the answer (a watch: its whole stream) has been taken or dropped
    try {
      return releasedWithBody(await call(route, impl, req, ctx, p, track), release);
    } catch (err) {
      release();
      throw err;
    }
  };
}

function call(route: Route, impl: Impl, req: Request, ctx: HandlerContext, p: GatewayParts, track: Track): Promise<Response> {
  switch (route.method.methodKind) {
    case "unary":
      return unary(route, impl, req, ctx, p, track);
    case "server_streaming":
      return serverStream(route, impl, req, ctx, p, track);
    default:
      return bidiStream(route, impl, req, ctx, p, track);
  }
}

type Track = (request: unknown) => CallEnd;

async function unary(route: Route, impl: Impl, req: Request, ctx: HandlerContext, p: GatewayParts, track: Track): Promise<Response> {
  let reservation: Reservation | undefined;
  // a request that is not JSON never becomes a call, as with etcd's gateway in front of its gRPC server
  let end = untracked;
  try {
    const request = decode(route.method.input, await readText(req, p.maxJsonBytes));
    end = track(request);
    const kind = BUDGETED_REQUESTS.get(route.method.input)?.(request as never);
    // JSON answers of lists are held as text: they count against the gRPC server's budget
    if (kind !== undefined) reservation = await p.budget.admit(`json ${kind}`, req.signal);
    const body = new TextEncoder().encode(JSON.stringify(encode(route.method.output, await impl(request, ctx))));
    end(OK);
    const headers = { ...JSON_HEADERS, "content-length": String(body.length) };
    if (!reservation) return new Response(body, { headers });
    reservation.settle(body.length);
    return new Response(heldBody(body, reservation), { headers });
  } catch (err) {
    reservation?.release();
    const e = asConnectError(err);
    end(e.code);
    return errorResponse(e);
  }
}

async function serverStream(route: Route, impl: Impl, req: Request, ctx: HandlerContext, p: GatewayParts, track: Track): Promise<Response> {
  let request: unknown;
  try {
    request = decode(route.method.input, await readText(req, p.maxJsonBytes));
  } catch (err) {
    return errorResponse(err);
  }
  return streamResponse(route, impl(request, ctx) as AsyncIterable<unknown>, ctx, track(request));
}

/** Watch and LeaseKeepAlive: the body's JSON values are the requests, read as they arrive. */
async function bidiStream(route: Route, impl: Impl, req: Request, ctx: HandlerContext, p: GatewayParts, track: Track): Promise<Response> {
  const values = jsonValues(bodyChunks(req), p.maxJsonBytes);
  // a first message that is not JSON is answered as etcd's gateway does, before any response
  let first: IteratorResult<unknown>;
  try {
    first = await inBodyTime(values.next());
  } catch (err) {
    return errorResponse(err instanceof ConnectError ? err : new ConnectError((err as Error).message, Code.Unknown));
  }
  const input = route.method.input;
  async function* requests(): AsyncGenerator<unknown> {
    try {
      if (first.done) return;
      yield decode(input, first.value);
      for await (const v of values) yield decode(input, v);
    } catch {
      // a malformed later message ends the requests; responses go on, as with etcd
    }
  }
  return streamResponse(route, impl(requests(), ctx) as AsyncIterable<unknown>, ctx, track(undefined));
}

/** One line per response, each read from the service only when the client took the last. */
function streamResponse(route: Route, responses: AsyncIterable<unknown>, ctx: HandlerContext, end: CallEnd): Response {
  const it = responses[Symbol.asyncIterator]();
  const enc = new TextEncoder();
  // a client that goes away while a response is awaited ends the service's stream: what it
  // yields or throws then has no one to go to (the controller is closed)
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await it.next();
        if (cancelled) return;
        if (next.done) {
          end(OK);
          return controller.close();
        }
        controller.enqueue(enc.encode(`${JSON.stringify({ result: encode(route.method.output, next.value) })}\n`));
      } catch (err) {
        if (cancelled) return;
        const e = toConnectError(err);
        end(e.code);
        controller.enqueue(enc.encode(JSON.stringify({ error: streamError(e) })));
        controller.close();
      }
    },
    cancel() {
      cancelled = true;
      end(undefined);
      (ctx as ReturnType<typeof createHandlerContext>).abort();
      void it.return?.().catch(() => {});
    },
  }, { highWaterMark: 0 });
  return new Response(body, { headers: JSON_HEADERS });
}

function handlerContext(route: Route, req: Request, values: GatewayParts["contextValues"]): ReturnType<typeof createHandlerContext> {
  // etcd's gateway passes Authorization on as the call's metadata; its server reads the token there
  const requestHeader = new Headers();
  const token = req.headers.get("authorization");
  if (token !== null) {
    requestHeader.set("authorization", token);
    requestHeader.set("token", token);
  }
  return createHandlerContext({
    service: route.service,
    method: route.method,
    protocolName: "etcd-json-gateway",
    requestMethod: req.method,
    url: req.url,
    requestSignal: req.signal,
    requestHeader,
    contextValues: values?.(requestHeader) ?? createContextValues(),
  });
}

/** The JSON of a request, as etcd's gateway reads it: unknown fields ignored, an empty body an empty request. */
function decode(schema: DescMessage, json: unknown): unknown {
  try {
    const value = typeof json === "string" ? (json.trim() === "" ? {} : parse(json)) : json;
    return fromJson(schema, value as JsonValue, { ignoreUnknownFields: true });
  } catch (err) {
    throw new ConnectError((err as Error).message, Code.InvalidArgument);
  }
}

function encode(schema: DescMessage, answer: unknown): JsonValue {
  let msg = create(schema, answer as never);
  // watch events travel pre-encoded as unknown fields (watch-encoding.ts): decode them
  if (msg.$unknown?.length) msg = fromBinary(schema, toBinary(schema, msg));
  return toJson(schema, msg, { useProtoFieldName: true });
}

async function* bodyChunks(req: Request): AsyncGenerator<Uint8Array> {
  if (!req.body) return;
  const reader = req.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** `reading`, or DeadlineExceeded once BODY_TIMEOUT_MS passed. */
async function inBodyTime<T>(reading: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ConnectError(`strata: the request body did not arrive within ${BODY_TIMEOUT_MS / 1000} s`, Code.DeadlineExceeded)), BODY_TIMEOUT_MS);
  });
  try {
    return await Promise.race([reading, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A unary request's body, refused once it passes `maxBytes` or BODY_TIMEOUT_MS. */
function readText(req: Request, maxBytes: number): Promise<string> {
  return inBodyTime(readWhole(req, maxBytes));
}

async function readWhole(req: Request, maxBytes: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of bodyChunks(req)) {
    bytes += chunk.length;
    if (bytes > maxBytes) {
      throw new ConnectError(`strata: the request body exceeds ${maxBytes} bytes`, Code.ResourceExhausted);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, bytes).toString("utf8");
}

/**
 * The answer's bytes, holding their share of the response budget until taken or dropped
 * (a client that takes nothing is cut after the stall timeout, HTTP/1.1 and HTTP/2 alike).
 */
function heldBody(bytes: Uint8Array, reservation: Reservation): ReadableStream<Uint8Array> {
  const done = () => reservation.release();
  let sent = false;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent) {
        done();
        return controller.close();
      }
      sent = true;
      controller.enqueue(bytes);
    },
    cancel: done,
  }, { highWaterMark: 0 });
}

/** grpc-gateway v1's HTTP status for a gRPC code (runtime.HTTPStatusFromCode) */
const HTTP_STATUS: Record<number, number> = {
  [Code.Canceled]: 408, [Code.Unknown]: 500, [Code.InvalidArgument]: 400, [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404, [Code.AlreadyExists]: 409, [Code.PermissionDenied]: 403, [Code.Unauthenticated]: 401,
  [Code.ResourceExhausted]: 429, [Code.FailedPrecondition]: 412, [Code.Aborted]: 409, [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501, [Code.Internal]: 500, [Code.Unavailable]: 503, [Code.DataLoss]: 500,
};

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout", 409: "Conflict",
  412: "Precondition Failed", 429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented",
  503: "Service Unavailable", 504: "Gateway Timeout",
};

function asConnectError(err: unknown): ConnectError {
  return err instanceof JsonStreamError ? new ConnectError(err.message, Code.InvalidArgument) : toConnectError(err);
}

function errorResponse(err: unknown): Response {
  const e = asConnectError(err);
  const body = { error: e.rawMessage, message: e.rawMessage, code: e.code };
  return new Response(JSON.stringify(body), { status: HTTP_STATUS[e.code] ?? 500, headers: { "content-type": "application/json" } });
}

/** an error in the middle of a stream, as grpc-gateway v1 writes it */
function streamError(e: ConnectError): Record<string, unknown> {
  const http = HTTP_STATUS[e.code] ?? 500;
  return { grpc_code: e.code, http_code: http, message: e.rawMessage, http_status: STATUS_TEXT[http] ?? "" };
}

/** a plain answer as Go's net/http writes one (http.Error) */
export function text(status: number, message: string): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" },
  });
}
