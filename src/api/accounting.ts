// Accounting of gRPC calls for metrics and the slow-request log. Calls are timed and
// their status read at the HTTP/2 level, so every outcome counts — also refusals made
// before a handler runs (an oversized message); the decoded request of a unary call is kept
// so a slow one can be logged with its keys and the backend it went to.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { type ContextValues, createContextKey, createContextValues, type Interceptor } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import type { TxnRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { toKeyRange } from "../engine/keyrange.ts";
import type { KeyRange } from "../engine/types.ts";
import type { GrpcCall, GrpcType } from "../observe/metrics.ts";
import { log } from "../observe/log.ts";
import type { Observer } from "../observe/observer.ts";
import { type Router, txnRanges } from "../router/router.ts";

/** grpc-status numbers by name, as grpc-go's codes.Code prints them */
const CODE_NAMES = [
  "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists", "PermissionDenied",
  "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable",
  "DataLoss", "Unauthenticated",
];

const TYPES: Record<string, GrpcType> = {
  unary: "unary",
  server_streaming: "server_stream",
  client_streaming: "client_stream",
  bidi_streaming: "bidi_stream",
};

/** keys shown per slow request, and characters per key */
const SHOWN_KEYS = 5;
const SHOWN_CHARS = 200;

interface CallRecord {
  call: GrpcCall;
  start: number;
  /** the decoded request of a unary call */
  request?: unknown;
}

const RECORD = createContextKey<CallRecord | undefined>(undefined, { description: "strata call record" });

type Req = Http2ServerRequest | IncomingMessage;
type Res = Http2ServerResponse | ServerResponse;

export interface Accounting {
  /** wraps the HTTP/2 handler: times each call and reads its grpc-status */
  wrap(handler: (req: Req, res: Res) => void): (req: Req, res: Res) => void;
  /** for connectNodeAdapter: hands the call record to the interceptor */
  contextValues(req: Req): ContextValues;
  interceptor: Interceptor;
  /** keeps the decoded request of a unary call served without Connect */
  noteRequest(req: Req, message: unknown): void;
}

export function callAccounting(services: DescService[], observer: Observer, router: Router): Accounting {
  const calls = new Map<string, GrpcCall>();
  for (const s of services) {
    for (const m of s.methods) calls.set(`/${s.typeName}/${m.name}`, { service: s.typeName, method: m.name, type: TYPES[m.methodKind]! });
  }
  observer.metrics.declare([...calls.values()]);
  const records = new WeakMap<Req, CallRecord>();

  return {
    wrap: (handler) => (req, res) => {
      const call = calls.get((req.url ?? "").split("?")[0]!);
      // methods nobody serves are not counted (as grpc-go does not), so paths cannot grow label sets
      if (!call) return handler(req, res);
      const record: CallRecord = { call, start: performance.now() };
      records.set(req, record);
      observer.callStarted(call);
      // a call is handled when its status is sent; one that never gets one ended when its
      // client went away (the stream may close later: a refused request is still arriving)
      let finished = false;
      const finish = (status: unknown) => {
        if (finished) return;
        finished = true;
        const code = status === undefined ? "Canceled" : CODE_NAMES[Number(status)] ?? String(status);
        try {
          observer.callFinished(call, code, (performance.now() - record.start) / 1000, () => describe(call, record.request, router));
        } catch (err) {
          // accounting must never take the server down with it
          log("error", "accounting a call failed", { method: `/${call.service}/${call.method}`, error: String(err) });
        }
      };
      const addTrailers = res.addTrailers.bind(res) as (h: Record<string, unknown>) => void;
      (res as { addTrailers: unknown }).addTrailers = (h: Record<string, unknown>) => {
        addTrailers(h);
        if (h["grpc-status"] !== undefined) finish(h["grpc-status"]);
      };
      // a trailers-only answer carries its status in the headers
      res.once("close", () => finish(res.getHeader("grpc-status")));
      handler(req, res);
    },
    contextValues: (req) => createContextValues().set(RECORD, records.get(req)),
    interceptor: (next) => async (req) => {
      const record = req.contextValues.get(RECORD);
      if (record && !req.stream) record.request = req.message;
      return next(req);
    },
    noteRequest: (req, message) => {
      const record = records.get(req);
      if (record) record.request = message;
    },
  };
}

/** What the slow-request log says about a call: its keys and the backends they route to. */
function describe(call: GrpcCall, request: unknown, router: Router): Record<string, unknown> {
  if (request === undefined) return {};
  const r = request as Record<string, unknown>;
  switch (`${call.service}/${call.method}`) {
    case "etcdserverpb.KV/Range":
    case "etcdserverpb.KV/DeleteRange": {
      const key = r.key as Uint8Array, end = r.rangeEnd as Uint8Array;
      return { key: printable(key), ...(end.length > 0 ? { range_end: printable(end) } : {}), backend: backends(router, [toKeyRange(key, end)]) };
    }
    case "etcdserverpb.KV/Put":
      return { key: printable(r.key as Uint8Array), backend: backends(router, [toKeyRange(r.key as Uint8Array, new Uint8Array(0))]) };
    case "etcdserverpb.KV/Txn": {
      const ranges = txnRanges(request as TxnRequest);
      const keys = [...new Set(ranges.map((k) => printable(k.start)))];
      const shown = keys.slice(0, SHOWN_KEYS);
      if (keys.length > SHOWN_KEYS) shown.push(`(${keys.length - SHOWN_KEYS} more)`);
      return { keys: shown, backend: backends(router, ranges) };
    }
    case "etcdserverpb.KV/Compact":
      return { revision: String(r.revision), backend: router.defaultUpstream ? router.routing.defaultBackend : router.parts.map((p) => p.name).join(",") };
  }
  if (call.service === "etcdserverpb.Lease") return { backend: router.routing.defaultBackend };
  return {};
}

function backends(router: Router, ranges: KeyRange[]): string {
  const names = new Set<string>();
  for (const r of ranges) for (const n of router.backendsFor(r)) names.add(n);
  return [...names].join(",");
}

/** A key as text: printable ASCII as it is, other bytes as \xNN, cut after SHOWN_CHARS. */
export function printable(key: Uint8Array): string {
  let out = "";
  for (const b of key) {
    out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`;
    if (out.length >= SHOWN_CHARS) return `${out.slice(0, SHOWN_CHARS)}…`;
  }
  return out;
}
