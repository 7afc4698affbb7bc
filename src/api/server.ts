// The gRPC server: Connect-RPC's gRPC protocol over HTTP/2 (cleartext or TLS), serving etcd's
// services under their etcd names (/etcdserverpb.KV/Range, ...).
import * as http2 from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Auth, Cluster, KV, Lease, Maintenance, Watch } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { LeaseKeeper } from "../engine/leases.ts";
import type { Router } from "../router/router.ts";
import type { WatchHub } from "../engine/watch-hub.ts";
import { Admin } from "../gen/strata/admin/v1/admin_pb.ts";
import type { Observer } from "../observe/observer.ts";
import { callAccounting } from "./accounting.ts";
import { adminService } from "./admin.ts";
import { authService } from "./auth.ts";
import { clusterService, type Member } from "./cluster.ts";
import type { ServerIdentity } from "./header.ts";
import { kvService } from "./kv.ts";
import { leaseService } from "./lease.ts";
import { withGrpcStatusWording } from "./grpc-status.ts";
import { GRPC_OVERHEAD_BYTES, type Limits } from "./limits.ts";
import { maintenanceService } from "./maintenance.ts";
import { unaryCalls } from "./unary.ts";
import { watchService } from "./watch.ts";

export interface ServerParts {
  store: Router;
  hub: WatchHub;
  leases: LeaseKeeper;
  identity: ServerIdentity;
  member: Member;
  limits: Limits;
  log: (level: string, msg: string, fields?: Record<string, unknown>) => void;
  /** aborted when strata shuts down: watch and lease keep-alive streams end */
  closing: AbortSignal;
  /** serve over TLS with these options (src/api/tls.ts) instead of cleartext */
  tls?: http2.SecureServerOptions;
  /** counts and times every call (metrics, status page, slow-request log) */
  observer: Observer;
}

/** HTTP/2 receive window, of the connection and of each stream: grpc-go's largest */
const RECEIVE_WINDOW_BYTES = 16 * 1024 * 1024;

const SERVICES: DescService[] = [KV, Watch, Lease, Cluster, Maintenance, Auth, Admin];

export function createGrpcServer(p: ServerParts): http2.Http2Server | http2.Http2SecureServer {
  const accounting = callAccounting(SERVICES, p.observer, p.store);
  // etcd's gRPC server refuses messages above max-request-bytes plus its overhead allowance
  const readMaxBytes = p.limits.maxRequestBytes + GRPC_OVERHEAD_BYTES;
  const services: Array<[DescService, object]> = [
    [KV, kvService(p.store, p.identity, p.limits)],
    // etcd fragments watch responses above the same limit its gRPC server enforces
    [Watch, watchService(p.store, p.hub, p.identity, readMaxBytes, p.closing)],
    [Lease, leaseService(p.leases, p.identity, p.closing)],
    [Cluster, clusterService(p.store, p.identity, p.member)],
    [Maintenance, maintenanceService(p.store, p.identity)],
    [Auth, authService(p.store, p.identity)],
    [Admin, adminService(p.store, p.log)],
  ];
  // streams (and anything unusual) go through Connect
  const connect = connectNodeAdapter({
    grpc: true,
    grpcWeb: false,
    connect: false,
    // etcd does not compress responses; compressing costs CPU on every list
    acceptCompression: [],
    readMaxBytes,
    routes(router) {
      for (const [service, impl] of services) router.service(service as never, impl as never);
    },
    fallback: unknownMethod,
    interceptors: [accounting.interceptor],
    contextValues: accounting.contextValues,
  });
  const unary = unaryCalls(services, { readMaxBytes, onRequest: accounting.noteRequest }, connect as never);
  const handle = accounting.wrap(withGrpcStatusWording(unary as never));
  // Bun's HTTP/2 client has the same frame scheduling as its server (see send-in-order.ts):
  // with only 64 KiB of connection window a request body can wait behind later ones for
  // seconds. grpc-go, and so etcd, grows its windows to 16 MiB on a busy connection. Bun
  // gives each new stream the connection's window, so the same size is announced for streams.
  const settings = { initialWindowSize: RECEIVE_WINDOW_BYTES };
  const server = p.tls ? http2.createSecureServer({ ...p.tls, settings }, handle) : http2.createServer({ settings }, handle);
  server.on("session", (s: http2.ServerHttp2Session) => s.setLocalWindowSize(RECEIVE_WINDOW_BYTES));
  return server;
}

/** gRPC's answer to a method nobody serves: status 12 (Unimplemented), as grpc-go words it. */
function unknownMethod(req: http2.Http2ServerRequest | import("node:http").IncomingMessage, res: any): void {
  const path = (req.url ?? "/").split("?")[0]!;
  const [, service = "", method = ""] = path.split("/");
  const known = SERVICES.find((s) => s.typeName === service);
  const message = known ? `unknown method ${method} for service ${service}` : `unknown service ${service}`;
  const isGrpc = String(req.headers["content-type"] ?? "").startsWith("application/grpc");
  if (!isGrpc) {
    res.writeHead(415, { "content-type": "text/plain" });
    res.end("strata serves the etcd v3 gRPC API here; use an etcd v3 client\n");
    return;
  }
  res.writeHead(200, { "content-type": "application/grpc" });
  res.addTrailers({ "grpc-status": "12", "grpc-message": message });
  res.end();
}
