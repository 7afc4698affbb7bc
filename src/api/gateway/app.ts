// What the client port answers over plain HTTP beside gRPC, as etcd's does: /health,
// /version, /metrics and the JSON gateway under /v3/ (and /v3beta/, which etcd 3.4 still
// rewrites to /v3/; /v3alpha/ it no longer serves). Every answer carries etcd's CORS headers.
import { Hono } from "hono";
import type { Observer } from "../../observe/observer.ts";
import { etcdHealth } from "../http/etcd-health.ts";
import { ETCD_API_VERSION } from "../maintenance.ts";
import { type GatewayParts, jsonGateway, text } from "./json-gateway.ts";

const CORS = {
  "access-control-allow-headers": "accept, content-type, authorization",
  "access-control-allow-methods": "POST, GET, OPTIONS, PUT, DELETE",
  "access-control-allow-origin": "*",
};

/** the cluster version a single member reports: its own, at minor precision */
const CLUSTER_VERSION = ETCD_API_VERSION.replace(/^(\d+\.\d+)\..*$/, "$1.0");

export function clientPortApp(observer: Observer, gateway: GatewayParts): Hono {
  const app = new Hono();
  const v3 = jsonGateway(gateway);
  app.use(async (c, next) => {
    await next();
    for (const [name, value] of Object.entries(CORS)) c.res.headers.set(name, value);
  });
  const onlyGet = (method: string) => (method === "GET" ? undefined : text(405, "Method Not Allowed"));
  app.all("/health", (c) => onlyGet(c.req.method) ?? etcdHealth(observer, new URL(c.req.url)));
  app.all("/version", (c) => onlyGet(c.req.method) ?? c.json({ etcdserver: ETCD_API_VERSION, etcdcluster: CLUSTER_VERSION }));
  app.get("/metrics", async (c) => c.body(await observer.metrics.text(), 200, { "content-type": observer.metrics.contentType }));
  app.all("/v3/*", (c) => v3(c.req.raw, c.req.path.slice("/v3/".length)));
  app.all("/v3beta/*", (c) => v3(c.req.raw, c.req.path.slice("/v3beta/".length)));
  app.notFound(() => text(404, "404 page not found"));
  return app;
}
