// The gRPC server: etcd's services under their etcd names (/etcdserverpb.KV/Range, ...) on
// strata's own HTTP/2 server (src/api/h2, cleartext or TLS). Unary calls, RangeStream and
// Watch are served straight on the stream (unary.ts, range-stream.ts, watch-call.ts); other
// streams and anything unusual go through Connect.
import type { TlsOptions } from "node:tls";
import type { DescService } from "@bufbuild/protobuf";
import { createConnectRouter, createContextValues } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { Auth, Cluster, KV, Lease, Maintenance, Watch } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Keyspace, RangeStreams, Rerouting } from "../keyspace/contract.ts";
import { Admin } from "../gen/strata/admin/v1/admin_pb.ts";
import { Election } from "../gen/etcd/api/v3electionpb/v3election_pb.ts";
import { Lock } from "../gen/etcd/api/v3lockpb/v3lock_pb.ts";
import type { Observer } from "../observe/observer.ts";
import { callAccounting } from "./accounting.ts";
import { adminService, type ReadTopology } from "./admin.ts";
import { authService } from "./auth.ts";
import type { AuthStore } from "./auth-store.ts";
import { CALLER, callerOf } from "./caller.ts";
import { clusterService, type Member } from "./cluster.ts";
import type { GrpcCall } from "./grpc-call.ts";
import { MAX_CONCURRENT_STREAMS } from "./h2/connection.ts";
import { clientPortHttp, isGrpc } from "./gateway/index.ts";
import { ErrorCode } from "./h2/frames.ts";
import { H2Server } from "./h2/server.ts";
import type { H2Stream } from "./h2/stream.ts";
import type { ServerIdentity } from "./header.ts";
import { kvRange, kvService } from "./kv.ts";
import { leaseService } from "./lease.ts";
import { GRPC_OVERHEAD_BYTES, type Limits } from "./limits.ts";
import { ETCD_API_VERSION, maintenanceService } from "./maintenance.ts";
import { electionService, lockService } from "./recipes.ts";
import { RANGE_STREAM_PATH, type RangeStreamParts, serveRangeStream } from "./range-stream.ts";
import { ResponseBudget } from "./response-budget.ts";
import { serveWithConnect } from "./streaming.ts";
import { serveUnary, servesUnary, unaryMethods } from "./unary.ts";
import { WatchCalls, watchService } from "./watch.ts";
import { serveWatch, WATCH_PATH } from "./watch-call.ts";

export interface ServerParts {
  /** the keyspace, and RangeStream answered over it */
  keyspace: Keyspace & RangeStreams;
  /** new routing rules while serving (the Admin service) */
  rerouting: Rerouting;
  /** how the config a Migrate call sends is read: config/ reads it, throwing a ConfigError for bad config */
  readTopology: ReadTopology;
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
  /** what one client may make strata hold or wait for (docs/http2-limits.md) */
  http2: Http2Limits;
  /** etcd's users, roles and permissions, checked on every call once auth is on */
  auth: AuthStore;
}

export interface Http2Limits {
  /** bytes of large read responses read and not yet sent, at most */
  responseBudgetBytes: number;
  /** a stream whose response has not moved for this long is reset; a read waits for budget this long at most */
  stalledStreamTimeoutMs: number;
  /** a connection with no stream for this long is closed */
  idleConnectionTimeoutMs: number;
  /** streams one connection may have at once (etcd's --max-concurrent-streams); never above strata's own bound */
  maxConcurrentStreams: number;
  /** client connections open at once; a new HTTP/2 one past it gets GOAWAY (0: no bound) */
  maxConnections: number;
}

/** refused connections are logged at most this often (their count is on /metrics) */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

const SERVICES: DescService[] = [KV, Watch, Lease, Cluster, Maintenance, Auth, Admin, Election, Lock];

export function createGrpcServer(p: ServerParts): H2Server {
  const accounting = callAccounting(SERVICES, p.observer, p.keyspace);
  // etcd's gRPC server refuses messages above max-request-bytes plus its overhead allowance
  const readMaxBytes = p.limits.maxRequestBytes + GRPC_OVERHEAD_BYTES;
  // a read waiting longer than a stalled holder of the budget is kept: the budget is busy with readers that read
  const budget = new ResponseBudget(p.http2.responseBudgetBytes, p.http2.stalledStreamTimeoutMs);
  const maxConcurrentStreams = Math.min(p.http2.maxConcurrentStreams, MAX_CONCURRENT_STREAMS);
  // etcd cuts RangeStream's chunks near its max-request-bytes
  const streams: RangeStreamParts = { keyspace: p.keyspace, id: p.identity, budget, chunkBytes: p.limits.maxRequestBytes, closing: p.closing, auth: p.auth };
  const kv = kvService(p.keyspace, p.identity, p.limits, streams, p.auth, p.observer.metrics);
  // etcd fragments watch responses above the same limit its gRPC server enforces
  const watches = new WatchCalls(p.keyspace, p.identity, readMaxBytes, p.closing, p.auth);
  const watch = watchService(watches);
  const lease = leaseService(p.keyspace, p.identity, p.closing, p.auth);
  const services: Array<[DescService, object]> = [
    [KV, kv],
    [Watch, watch],
    [Lease, lease],
    [Cluster, clusterService(p.identity, p.member, p.auth)],
    [Maintenance, maintenanceService(p.keyspace, p.identity, p.auth)],
    [Auth, authService(p.keyspace, p.identity, p.auth)],
    [Admin, adminService(p.rerouting, p.readTopology, p.log, p.auth)],
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
  const encodedRange = kvRange(p.keyspace, p.identity, p.auth, p.observer.metrics, true);
  // a campaign or a lock waits for others and must end when its client goes away: Connect's context carries that signal
  const quick = services.filter(([service]) => service !== Election && service !== Lock);
  const unary = unaryMethods(quick, new Map([["/etcdserverpb.KV/Range", encodedRange]]));
  p.observer.metrics.serverVersion(ETCD_API_VERSION);

  // plain HTTP beside gRPC, as etcd serves it: the JSON gateway over the same services, /health, /version, /metrics
  // (etcd's gateway refuses what its gRPC server would: JSON is base64 and quoting on top, so twice that)
  const http = clientPortHttp(p.observer, {
    services,
    maxJsonBytes: 2 * readMaxBytes,
    budget,
    track: accounting.track,
    maxConcurrentCalls: maxConcurrentStreams,
    // etcd's gateway hands Authorization on as the call's token; a client certificate is not an identity here
    contextValues: (h) => createContextValues().set(CALLER, { token: h.get("token") ?? undefined }),
  }, p.tls !== undefined, p.http2.stalledStreamTimeoutMs);

  let lastRefusalLogged = 0;
  const server = new H2Server((stream) => {
    if (!isGrpc(stream)) return http.serveStream(stream);
    const { call, record } = accounting.begin(stream);
    const who = callerOf(stream);
    const method = unary.get(stream.path);
    // each returns its work's promise: a stream the client resets counts against the
    // connection's stream limit until its handler is done (rapid reset, CVE-2023-44487)
    if (method && servesUnary(stream)) {
      return serveUnary(method, call, readMaxBytes, budget, (message) => record && (record.request = message), createContextValues().set(CALLER, who));
    }
    // RangeStream's chunks framed by hand, as Range's answers are (the same conditions)
    if (stream.path === RANGE_STREAM_PATH && servesUnary(stream)) return serveRangeStream(streams, call, readMaxBytes, who);
    // Watch's responses framed by hand too: Connect's pipeline per stream cost more than the watchers
    if (stream.path === WATCH_PATH && servesUnary(stream)) return serveWatch(watches, call, readMaxBytes, who);
    const handler = viaConnect.get(stream.path);
    if (!handler) return unknownMethod(stream, call);
    // a Range that Connect answers (a compressed or JSON request) counts in the budget too
    const budgeted = method?.kind ? { budget, kind: `connect ${stream.path}` } : undefined;
    return serveWithConnect(handler, call, accounting.contextValues(record).set(CALLER, who), budgeted).catch(() => stream.reset(ErrorCode.INTERNAL_ERROR));
  }, p.tls, {
    idleTimeoutMs: p.http2.idleConnectionTimeoutMs,
    stalledStreamTimeoutMs: p.http2.stalledStreamTimeoutMs,
    maxConcurrentStreams,
    maxConnections: p.http2.maxConnections > 0 ? p.http2.maxConnections : Infinity,
    // grpc-go clients report only "all SubConns are in TransientFailure": the operator learns why here
    onRefused: () => {
      if (Date.now() - lastRefusalLogged < REFUSAL_LOG_INTERVAL_MS) return;
      lastRefusalLogged = Date.now();
      p.log("warn", "client connection refused: too many open (--max-connections)", { max: p.http2.maxConnections, refused: server.refusedConnections });
    },
  }, http.accept);
  p.observer.metrics.clientConnections = () => ({ open: server.openConnections, refused: server.refusedConnections, heldBytes: server.heldBytes });
  return server;
}

/** gRPC's answer to a method nobody serves: status 12 (Unimplemented), as grpc-go words it. */
function unknownMethod(stream: H2Stream, call: GrpcCall): void {
  const [, service = "", method = ""] = stream.path.split("?")[0]!.split("/");
  const known = SERVICES.find((s) => s.typeName === service);
  const message = known ? `unknown method ${method} for service ${service}` : `unknown service ${service}`;
  call.fail(12, message);
}
