// The HTTP endpoints beside the gRPC API, on --metrics-listen: probes for Kubernetes and
// load balancers, Prometheus metrics, and the status page with the JSON it polls.
import { type Context, Hono } from "hono";
import type { Observer } from "../../observe/observer.ts";
import { etcdHealth, failing } from "./etcd-health.ts";
import { statusReport } from "../../observe/status.ts";
import { STATUS_PAGE } from "./status-page.ts";

export function observabilityApp(o: Observer, about: { name: string; version: string; commit: string }): Hono {
  const app = new Hono();
  // the process is up and serving (/livez is etcd's name for it)
  const alive = (c: Context) => c.text("ok\n");
  app.get("/healthz", alive);
  app.get("/livez", alive);
  // every backend answers; otherwise 503 with the ones that do not
  app.get("/readyz", async (c) => {
    const { lines } = await failing(o, new Set(c.req.queries("exclude") ?? []));
    return lines.length === 0 ? c.text("ok\n") : c.text(`${lines.join("\n")}\n`, 503);
  });
  // etcd's older probe, with etcd's JSON answer (kubeadm's etcd manifests use it)
  app.get("/health", (c) => etcdHealth(o, new URL(c.req.url)));
  app.get("/metrics", async (c) => c.body(await o.metrics.text(), 200, { "content-type": o.metrics.contentType }));
  app.get("/status.json", async (c) => {
    c.header("cache-control", "no-store");
    return c.json(await statusReport(o, about));
  });
  app.get("/", (c) => c.html(STATUS_PAGE));
  return app;
}
