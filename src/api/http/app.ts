// The HTTP endpoints beside the gRPC API, on --metrics-listen: probes for Kubernetes and
// load balancers, Prometheus metrics, and the status page with the JSON it polls.
import { type Context, Hono } from "hono";
import { AlarmType } from "../../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { checkBackends } from "../../observe/health.ts";
import { HEALTH_TIMEOUT_MS, type Observer } from "../../observe/observer.ts";
import { statusReport } from "../../observe/status.ts";
import { STATUS_PAGE } from "./status-page.ts";

export function observabilityApp(o: Observer, about: { name: string; version: string }): Hono {
  const app = new Hono();
  /**
   * One line per backend that does not answer or reported damaged data, naming it and
   * why, and one per raised alarm unless the probe's ?exclude= names it (etcd's /health
   * takes exclude=NOSPACE, so a full database does not get its server restarted).
   */
  const failing = async (c: Context) => {
    const { router } = o.state;
    const probes = o.state.probes();
    const excluded = new Set(c.req.queries("exclude") ?? []);
    const down = (await checkBackends(probes, HEALTH_TIMEOUT_MS))
      .filter((h) => !h.ok)
      .map((h) => `backend ${h.name} (${probes.find((p) => p.name === h.name)!.url}): ${h.error}`);
    const damaged = router.damaged.map((d) => `backend ${d.name} (${d.url}): damaged data: ${d.error}`);
    const alarms = [...new Set(router.alarms.list().map((a) => AlarmType[a.alarm]))].filter((name) => !excluded.has(name));
    const why = (name: string) => (name === "NOSPACE" && router.alarms.reason ? `: ${router.alarms.reason}` : "");
    return { lines: [...down, ...damaged, ...alarms.map((name) => `alarm ${name}${why(name)}`)], alarms };
  };
  // the process is up and serving (/livez is etcd's name for it)
  const alive = (c: Context) => c.text("ok\n");
  app.get("/healthz", alive);
  app.get("/livez", alive);
  // every backend answers; otherwise 503 with the ones that do not
  app.get("/readyz", async (c) => {
    const { lines } = await failing(c);
    return lines.length === 0 ? c.text("ok\n") : c.text(`${lines.join("\n")}\n`, 503);
  });
  // etcd's older probe, with etcd's JSON answer (kubeadm's etcd manifests use it)
  app.get("/health", async (c) => {
    const { lines, alarms } = await failing(c);
    // etcd names a raised alarm "ALARM NOSPACE"
    const reason = alarms.length > 0 && alarms.length === lines.length ? alarms.map((a) => `ALARM ${a}`).join("; ") : lines.join("; ");
    return c.json({ health: String(lines.length === 0), reason }, lines.length === 0 ? 200 : 503);
  });
  app.get("/metrics", async (c) => c.body(await o.metrics.text(), 200, { "content-type": o.metrics.contentType }));
  app.get("/status.json", async (c) => {
    c.header("cache-control", "no-store");
    return c.json(await statusReport(o, about));
  });
  app.get("/", (c) => c.html(STATUS_PAGE));
  return app;
}
