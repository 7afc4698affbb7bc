// Accounting of gRPC calls for metrics and the slow-request log. Calls are timed and
// their status read at the HTTP/2 level, so every outcome counts — also refusals made
// before a handler runs (an oversized message); the decoded request of a unary call is kept
// so a slow one can be logged with its keys and the backend it went to.
import { type ContextValues, createContextKey, createContextValues, type Interceptor } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import type { TxnRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Keyspace } from "../keyspace/contract.ts";
import { toKeyRange, txnRanges } from "../mvcc/keyrange.ts";
import type { GrpcMethod, GrpcType } from "../observe/metrics.ts";
import { log } from "../util/log.ts";
import type { Observer } from "../observe/observer.ts";
import { GrpcCall } from "./grpc-call.ts";
import type { H2Stream } from "./h2/stream.ts";

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

export interface CallRecord {
  labels: GrpcMethod;
  start: number;
  /** the decoded request of a unary call */
  request?: unknown;
}

const RECORD = createContextKey<CallRecord | undefined>(undefined, { description: "strata call record" });

/** ends a call counted by `track` with its gRPC code (undefined: the client went away) */
export type CallEnd = (code: number | undefined) => void;

export interface Accounting {
  /** A call on `stream`, timed from now until its status is sent or the stream closes without one. */
  begin(stream: H2Stream): { call: GrpcCall; record: CallRecord | undefined };
  /** A call to `path` that came another way (etcd's JSON gateway), counted as gRPC's are from now until it ends. */
  track(path: string, request: unknown): CallEnd;
  /** for Connect's handlers: hands the call record to the interceptor */
  contextValues(record: CallRecord | undefined): ContextValues;
  interceptor: Interceptor;
}

export function callAccounting(services: DescService[], observer: Observer, keyspace: Keyspace): Accounting {
  const labels = new Map<string, GrpcMethod>();
  for (const s of services) {
    for (const m of s.methods) labels.set(`/${s.typeName}/${m.name}`, { service: s.typeName, method: m.name, type: TYPES[m.methodKind]! });
  }
  observer.metrics.declare([...labels.values()]);

  /** Counts a call of `l` started now; the function returned ends it with its grpc-status, once. */
  const start = (l: GrpcMethod, record: CallRecord) => {
    observer.callStarted(l);
    let finished = false;
    return (status: string | undefined) => {
      if (finished) return;
      finished = true;
      const code = status === undefined ? "Canceled" : CODE_NAMES[Number(status)] ?? status;
      try {
        observer.callFinished(l, code, (performance.now() - record.start) / 1000, () => describe(l, record.request, keyspace));
      } catch (err) {
        // accounting must never take the server down with it
        log("error", "accounting a call failed", { method: `/${l.service}/${l.method}`, error: String(err) });
      }
    };
  };

  return {
    begin(stream) {
      const l = labels.get(stream.path.split("?")[0]!);
      // methods nobody serves are not counted (as grpc-go does not), so paths cannot grow label sets
      if (!l) return { call: new GrpcCall(stream, () => {}), record: undefined };
      const record: CallRecord = { labels: l, start: performance.now() };
      const finish = start(l, record);
      // a call that never sends a status ended when its client went away
      stream.onClose(() => finish(undefined));
      return { call: new GrpcCall(stream, finish), record };
    },
    track(path, request) {
      const l = labels.get(path);
      if (!l) return () => {};
      const finish = start(l, { labels: l, start: performance.now(), request });
      return (code) => finish(code === undefined ? undefined : String(code));
    },
    contextValues: (record) => createContextValues().set(RECORD, record),
    interceptor: (next) => async (req) => {
      const record = req.contextValues.get(RECORD);
      if (record && !req.stream) record.request = req.message;
      return next(req);
    },
  };
}

/** What the slow-request log says about a call: its keys and the backends they route to. */
function describe(call: GrpcMethod, request: unknown, keyspace: Keyspace): Record<string, unknown> {
  if (request === undefined) return {};
  const r = request as Record<string, unknown>;
  switch (`${call.service}/${call.method}`) {
    case "etcdserverpb.KV/Range":
    case "etcdserverpb.KV/DeleteRange": {
      const key = r.key as Uint8Array, end = r.rangeEnd as Uint8Array;
      return { key: printable(key), ...(end.length > 0 ? { range_end: printable(end) } : {}), backend: keyspace.backendsOf([toKeyRange(key, end)]).join(",") };
    }
    case "etcdserverpb.KV/Put":
      return { key: printable(r.key as Uint8Array), backend: keyspace.backendsOf([toKeyRange(r.key as Uint8Array, new Uint8Array(0))]).join(",") };
    case "etcdserverpb.KV/Txn": {
      const ranges = txnRanges(request as TxnRequest);
      const keys = [...new Set(ranges.map((k) => printable(k.start)))];
      const shown = keys.slice(0, SHOWN_KEYS);
      if (keys.length > SHOWN_KEYS) shown.push(`(${keys.length - SHOWN_KEYS} more)`);
      return { keys: shown, backend: keyspace.backendsOf(ranges).join(",") };
    }
    case "etcdserverpb.KV/Compact":
      return { revision: String(r.revision), backend: keyspace.compactsIn.join(",") };
  }
  if (call.service === "etcdserverpb.Lease") return { backend: keyspace.leasesIn };
  return {};
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
