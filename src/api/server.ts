// The gRPC server: Connect-RPC's gRPC protocol over HTTP/2 (cleartext or TLS), serving etcd's
// services under their etcd names (/etcdserverpb.KV/Range, ...).
import * as http2 from "node:http2";
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

const SERVICES = [KV, Watch, Lease, Cluster, Maintenance, Auth, Admin];

export function createGrpcServer(p: ServerParts): http2.Http2Server | http2.Http2SecureServer {
  const accounting = callAccounting(SERVICES, p.observer, p.store);
  const handler = connectNodeAdapter({
    grpc: true,
    grpcWeb: false,
    connect: false,
    // etcd does not compress responses; compressing costs CPU on every list
    acceptCompression: [],
    // etcd's gRPC server refuses messages above max-request-bytes plus its overhead allowance
    readMaxBytes: p.limits.maxRequestBytes + GRPC_OVERHEAD_BYTES,
    routes(router) {
      router.service(KV, kvService(p.store, p.identity, p.limits));
      // etcd fragments watch responses above the same limit its gRPC server enforces
      router.service(Watch, watchService(p.store, p.hub, p.identity, p.limits.maxRequestBytes + GRPC_OVERHEAD_BYTES, p.closing));
      router.service(Lease, leaseService(p.leases, p.identity, p.closing));
      router.service(Cluster, clusterService(p.store, p.identity, p.member));
      router.service(Maintenance, maintenanceService(p.store, p.identity));
      router.service(Auth, authService(p.store, p.identity));
      router.service(Admin, adminService(p.store, p.log));
    },
    fallback: unknownMethod,
    interceptors: [accounting.interceptor],
    contextValues: accounting.contextValues,
  });
  const handle = accounting.wrap(withGrpcStatusWording(handler));
  return p.tls ? http2.createSecureServer(p.tls, handle) : http2.createServer({}, handle);
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
