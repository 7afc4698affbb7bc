// The HTTP endpoints beside the gRPC API, on --metrics-listen: probes for Kubernetes and
// load balancers, Prometheus metrics, and the status page with the JSON it polls.
import { Hono } from "hono";
import { checkBackends } from "../../observe/health.ts";
import { HEALTH_TIMEOUT_MS, type Observer } from "../../observe/observer.ts";
import { statusReport } from "../../observe/status.ts";
import { STATUS_PAGE } from "./status-page.ts";

export function observabilityApp(o: Observer, about: { name: string; version: string }): Hono {
  const app = new Hono();
  // the process is up and serving
  app.get("/healthz", (c) => c.text("ok\n"));
  // every backend answers; otherwise 503 naming the ones that do not, and why
  app.get("/readyz", async (c) => {
    const { router } = o.state;
    const failing = (await checkBackends(router.parts, HEALTH_TIMEOUT_MS)).filter((h) => !h.ok);
    if (failing.length === 0) return c.text("ok\n");
    const lines = failing.map((h) => `backend ${h.name} (${router.byName.get(h.name)!.backend.name}): ${h.error}`);
    return c.text(`${lines.join("\n")}\n`, 503);
  });
  app.get("/metrics", async (c) => c.body(await o.metrics.text(), 200, { "content-type": o.metrics.contentType }));
  app.get("/status.json", async (c) => {
    c.header("cache-control", "no-store");
    return c.json(await statusReport(o, about));
  });
  app.get("/", (c) => c.html(STATUS_PAGE));
  return app;
}
