// The gRPC server: etcd's services under their etcd names (/etcdserverpb.KV/Range, ...) on
// strata's own HTTP/2 server (src/api/h2, cleartext or TLS). Unary calls and RangeStream
// are served straight on the stream (unary.ts, range-stream.ts); other streams and anything
// unusual go through Connect.
import type { TlsOptions } from "node:tls";
import type { DescService } from "@bufbuild/protobuf";
import { createConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { Auth, Cluster, KV, Lease, Maintenance, Watch } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Keyspace, RangeStreams, Rerouting } from "../keyspace/contract.ts";
import { Admin } from "../gen/strata/admin/v1/admin_pb.ts";
import { Election } from "../gen/etcd/api/v3electionpb/v3election_pb.ts";
import { Lock } from "../gen/etcd/api/v3lockpb/v3lock_pb.ts";
import type { Observer } from "../observe/observer.ts";
import { callAccounting } from "./accounting.ts";
import { adminService } from "./admin.ts";
import { authService } from "./auth.ts";
import { clusterService, type Member } from "./cluster.ts";
import type { GrpcCall } from "./grpc-call.ts";
import { clientPortHttp, isGrpc } from "./gateway/index.ts";
import { ErrorCode } from "./h2/frames.ts";
import { H2Server } from "./h2/server.ts";
import type { H2Stream } from "./h2/stream.ts";
import type { ServerIdentity } from "./header.ts";
import { kvRange, kvService } from "./kv.ts";
import { leaseService } from "./lease.ts";
import { GRPC_OVERHEAD_BYTES, type Limits } from "./limits.ts";
import { ETCD_API_VERSION, maintenanceService } from "./maintenance.ts";
import { counted, countedKv } from "./mvcc-counts.ts";
import { electionService, lockService } from "./recipes.ts";
import { RANGE_STREAM_PATH, type RangeStreamParts, serveRangeStream } from "./range-stream.ts";
import { ResponseBudget } from "./response-budget.ts";
import { serveWithConnect } from "./streaming.ts";
import { serveUnary, servesUnary, unaryMethods } from "./unary.ts";
import { watchService } from "./watch.ts";

export interface ServerParts {
  /** the keyspace, and RangeStream answered over it */
  keyspace: Keyspace & RangeStreams;
  /** new routing rules while serving (the Admin service) */
  rerouting: Rerouting;
  identity: ServerIdentity;
  member: Member;
  limits: Limits;
  log: (level: string, msg: string, fields?: Record<string, unknown>) => void;
  /** aborted when strata shuts down: watch and lease keep-alive streams end */
  closing: AbortSignal;
  /** serve over TLS with these options (src/api/tls.ts) instead of cleartext */
  tls?: TlsOptions;
  /** counts and times every call (metrics, status page, slow-request log) */
  observer: Observer;
}

const SERVICES: DescService[] = [KV, Watch, Lease, Cluster, Maintenance, Auth, Admin, Election, Lock];

export function createGrpcServer(p: ServerParts): H2Server {
  const accounting = callAccounting(SERVICES, p.observer, p.keyspace);
  // etcd's gRPC server refuses messages above max-request-bytes plus its overhead allowance
  const readMaxBytes = p.limits.maxRequestBytes + GRPC_OVERHEAD_BYTES;
  const budget = new ResponseBudget();
  // etcd cuts RangeStream's chunks near its max-request-bytes
  const streams: RangeStreamParts = { keyspace: p.keyspace, id: p.identity, budget, chunkBytes: p.limits.maxRequestBytes, closing: p.closing };
  const kv = countedKv(kvService(p.keyspace, p.identity, p.limits, streams), p.observer.metrics);
  // etcd fragments watch responses above the same limit its gRPC server enforces
  const watch = watchService(p.keyspace, p.identity, readMaxBytes, p.closing);
  const lease = leaseService(p.keyspace, p.identity, p.closing);
  const services: Array<[DescService, object]> = [
    [KV, kv],
    [Watch, watch],
    [Lease, lease],
    [Cluster, clusterService(p.identity, p.member)],
    [Maintenance, maintenanceService(p.keyspace, p.identity)],
    [Auth, authService(p.keyspace, p.identity)],
    [Admin, adminService(p.rerouting, p.log)],
    // etcd's recipe services run over the services above, as etcd's run over a client of its own server
    [Election, electionService({ kv, lease, watch })],
    [Lock, lockService({ kv, lease, watch })],
  ];
  const connect = createConnectRouter({
    grpc: true,
    grpcWeb: false,
    connect: false,
    // etcd does not compress responses; compressing costs CPU on every list
    acceptCompression: [],
    readMaxBytes,
    interceptors: [accounting.interceptor],
  });
  for (const [service, impl] of services) connect.service(service as never, impl as never);
  const viaConnect = new Map<string, UniversalHandler>(connect.handlers.map((h) => [h.requestPath, h]));
  // the unary path writes ranges with range-frame.ts, so reads may hand over encoded key-values
  const encodedRange = counted(kvRange(p.keyspace, p.identity, true), p.observer.metrics, () => ({ ranges: 1, puts: 0, deletes: 0 }));
  // a campaign or a lock waits for others and must end when its client goes away: Connect's context carries that signal
  const quick = services.filter(([service]) => service !== Election && service !== Lock);
  const unary = unaryMethods(quick, new Map([["/etcdserverpb.KV/Range", encodedRange]]));
  p.observer.metrics.serverVersion(ETCD_API_VERSION);

  // plain HTTP beside gRPC, as etcd serves it: the JSON gateway over the same services, /health, /version, /metrics
  // (etcd's gateway refuses what its gRPC server would: JSON is base64 and quoting on top, so twice that)
  const http = clientPortHttp(p.observer, { services, maxJsonBytes: 2 * readMaxBytes, budget, track: accounting.track }, p.tls !== undefined);

  return new H2Server((stream) => {
    if (!isGrpc(stream)) return http.serveStream(stream);
    const { call, record } = accounting.begin(stream);
    const method = unary.get(stream.path);
    if (method && servesUnary(stream)) {
      void serveUnary(method, call, readMaxBytes, budget, (message) => record && (record.request = message));
      return;
    }
    // RangeStream's chunks framed by hand, as Range's answers are (the same conditions)
    if (stream.path === RANGE_STREAM_PATH && servesUnary(stream)) {
      void serveRangeStream(streams, call, readMaxBytes);
      return;
    }
    const handler = viaConnect.get(stream.path);
    if (!handler) return unknownMethod(stream, call);
    serveWithConnect(handler, call, accounting.contextValues(record)).catch(() => stream.reset(ErrorCode.INTERNAL_ERROR));
  }, p.tls, http.accept);
}

/** gRPC's answer to a method nobody serves: status 12 (Unimplemented), as grpc-go words it. */
function unknownMethod(stream: H2Stream, call: GrpcCall): void {
  const [, service = "", method = ""] = stream.path.split("?")[0]!.split("/");
  const known = SERVICES.find((s) => s.typeName === service);
  const message = known ? `unknown method ${method} for service ${service}` : `unknown service ${service}`;
  call.fail(12, message);
}
