// Observability as an operator meets it: strata over SQLite and PostgreSQL (events
// routed to PostgreSQL), driven by a real etcd client; then the probes, the metrics as
// Prometheus's promtool reads them (values matching what the client did), the
// slow-request log, and /readyz naming PostgreSQL once it is stopped.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { type DatabaseServer, startPostgres } from "../../scripts/databases.ts";
import { promtoolCheck, samples, value } from "../support/prometheus.ts";
import { startStrata, type StrataProcess } from "../support/strata.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-observe-"));
let pg: DatabaseServer;
let strata: StrataProcess;
let client: Etcd3;

beforeAll(async () => {
  pg = await startPostgres();
  const config = join(dir, "strata.yaml");
  writeFileSync(config, [
    "backends:",
    `  main: sqlite://${join(dir, "main.db")}`,
    `  events: ${pg.createDatabase("observe_events")}`,
    "default: main",
    "routes:",
    "  - match: { resource: events }",
    "    backend: events",
    // every request counts as slow, and is logged on a line of its own, so the lines can be checked
    "slow-request-threshold: 0ms",
    "slow-request-interval: 0s",
  ].join("\n"));
  strata = await startStrata(["--config", config]);
  client = new Etcd3({ hosts: strata.endpoint });
}, 120_000);

afterAll(async () => {
  client?.close();
  await strata?.stop();
  await pg?.destroy();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

const get = (path: string) => fetch(`${strata.metrics}${path}`);
async function scrape() {
  const res = await get("/metrics");
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toStartWith("text/plain");
  return res.text();
}
/** the message a call fails with */
async function failure(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error("the call succeeded");
}
const grpc = (method: string, code?: string) => ({ grpc_method: method, ...(code ? { grpc_code: code } : {}) });

/** Reads /metrics until check passes (per-backend figures are refreshed every few seconds). */
async function eventually(check: (text: string) => void): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const text = await scrape();
    try {
      check(text);
      return text;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

test("probes, metrics and slow-request log follow what a client did", async () => {
  expect((await get("/healthz")).status).toBe(200);
  expect(await (await get("/livez")).text()).toBe("ok\n");
  expect(await (await get("/readyz")).text()).toBe("ok\n");
  expect(await (await get("/health")).json()).toEqual({ health: "true", reason: "" });

  const before = samples(await scrape());
  const watch = await client.watch().prefix("/registry/pods/").create();
  const pods = ["a", "b", "c"].map((n) => `/registry/pods/default/${n}`);
  const events = ["e1", "e2"].map((n) => `/registry/events/default/${n}`);
  for (const k of [...pods, ...events]) await client.put(k).value("v");
  for (const k of [pods[0]!, pods[1]!, events[0]!, "/registry/pods/default/missing"]) await client.get(k).string();
  const txn = await client.if(pods[0]!, "Version", "==", 1).then(client.put(pods[0]!).value("w")).commit();
  expect(txn.succeeded).toBe(true);
  // a txn over both backends is refused; revoking a lease nobody granted is NotFound
  expect(await failure(client.if(pods[0]!, "Version", ">", 0).then(client.put(events[0]!).value("x")).commit())).toMatch(/spans backends/);
  expect(await failure(client.leaseClient.leaseRevoke({ ID: "12345" }))).toMatch(/lease not found/);
  // refused by the gRPC layer before any handler runs: still counted (its own client, as
  // etcd3 retries this error a few times and then stops calling that server for a while)
  const other = new Etcd3({ hosts: strata.endpoint });
  expect(await failure(other.put("/registry/pods/default/huge").value(Buffer.alloc(2_200_000)).exec())).toMatch(/larger than max/);
  other.close();
  const lease = client.lease(60, { autoKeepAlive: false });
  await lease.grant();
  await lease.revoke();

  const text = await eventually((t) => expect(value(samples(t), "etcd_debugging_mvcc_keys_total")).toBe(5));
  const lint = promtoolCheck(text);
  // promtool only objects to etcd's own gauge names ending in _total, which dashboards
  // expect as they are, and to prom-client's Node.js gauges of the same kind
  for (const remark of lint) expect(remark).toMatch(/^(etcd_debugging_mvcc_(keys|watcher|watch_stream)_total|etcd_server_proposals_(committed|applied)_total|nodejs_active_\w+_total) non-counter metrics should not have "_total" suffix$/);
  const after = samples(text);
  const delta = (name: string, labels: Record<string, string>) => (value(after, name, labels) ?? 0) - (value(before, name, labels) ?? 0);

  expect(delta("grpc_server_handled_total", grpc("Range", "OK"))).toBe(4);
  expect(delta("grpc_server_handled_total", grpc("Put", "OK"))).toBe(5);
  expect(delta("grpc_server_handled_total", grpc("Txn", "OK"))).toBe(1);
  expect(delta("grpc_server_handled_total", grpc("Txn", "FailedPrecondition"))).toBe(1);
  expect(delta("grpc_server_handled_total", grpc("LeaseRevoke", "NotFound"))).toBe(1);
  const oversized = delta("grpc_server_handled_total", grpc("Put", "ResourceExhausted"));
  expect(oversized).toBeGreaterThanOrEqual(1);
  expect(delta("grpc_server_started_total", { grpc_method: "Range", grpc_type: "unary", grpc_service: "etcdserverpb.KV" })).toBe(4);
  expect(delta("grpc_server_handling_seconds_count", grpc("Put"))).toBe(5 + oversized);
  expect(value(after, "grpc_server_started_total", { grpc_method: "Watch", grpc_type: "bidi_stream" })).toBeGreaterThanOrEqual(1);
  expect(value(after, "etcd_debugging_mvcc_watcher_total")).toBe(1);
  expect(value(after, "etcd_debugging_mvcc_watch_stream_total")).toBe(1);
  expect(value(after, "etcd_server_has_leader")).toBe(1);
  // this test's client holds a connection; nothing was refused
  expect(value(after, "strata_client_connections")).toBeGreaterThanOrEqual(1);
  expect(value(after, "strata_client_connection_held_bytes")).toBeGreaterThanOrEqual(0);
  expect(value(after, "strata_client_connections_refused_total")).toBe(0);
  expect(value(after, "etcd_debugging_lease_granted_total")).toBe(1);
  expect(value(after, "etcd_debugging_lease_revoked_total")).toBe(1);
  const head = await client.put(pods[2]!).value("last").exec();
  // the merged revision reaches a write's once every backend has closed up to it
  await eventually((t) => expect(value(samples(t), "etcd_debugging_mvcc_current_revision")).toBeGreaterThanOrEqual(Number(head.header.revision)));

  // per backend: the keys each holds, its size, its revision, and the time spent in it
  expect(value(after, "strata_backend_keys", { backend: "main" })).toBe(3);
  expect(value(after, "strata_backend_keys", { backend: "events" })).toBe(2);
  expect(value(after, "strata_backend_up", { backend: "events" })).toBe(1);
  expect(value(after, "strata_backend_size_bytes", { backend: "events" })).toBeGreaterThan(0);
  expect(value(after, "etcd_mvcc_db_total_size_in_bytes")).toBe(
    value(after, "strata_backend_size_bytes", { backend: "main" })! + value(after, "strata_backend_size_bytes", { backend: "events" })!,
  );
  expect(value(after, "strata_backend_revision", { backend: "events" })).toBeGreaterThan(0);
  expect(value(after, "strata_backend_request_duration_seconds_count", { backend: "events", operation: "write" })).toBeGreaterThanOrEqual(2);
  expect(value(after, "strata_backend_request_duration_seconds_count", { backend: "main", operation: "range" })).toBeGreaterThanOrEqual(3);

  // the slow-request log names the method, the key, the time taken and the backend
  const slow = strata.stderr().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
    .filter((l) => l.msg === "request took too long");
  const put = slow.find((l) => l.method === "/etcdserverpb.KV/Put" && l.key === events[1]);
  expect(put).toMatchObject({ level: "warn", backend: "events", code: "OK", "expected-duration": "0ms" });
  expect(put.took).toMatch(/^\d+\.\dms$/);
  expect(typeof put.time).toBe("string");
  const refused = slow.find((l) => l.method === "/etcdserverpb.KV/Txn" && l.code === "FailedPrecondition");
  expect(refused.keys).toEqual([pods[0], events[0]]);
  expect(refused.backend.split(",").sort()).toEqual(["events", "main"]);
  watch.cancel();
}, 60_000);

test("/readyz answers 503 naming the backend whose database is gone; /healthz stays 200", async () => {
  await pg.stop();
  try {
    const res = await get("/readyz");
    expect(res.status).toBe(503);
    const body = await res.text();
    expect(body).toStartWith("backend events (postgres://");
    expect(body).not.toContain("backend main");
    expect((await get("/healthz")).status).toBe(200);
    const health = await get("/health");
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ health: "false", reason: expect.stringMatching(/^backend events \(postgres:\/\//) });
    const text = await eventually((t) => expect(value(samples(t), "strata_backend_up", { backend: "events" })).toBe(0));
    expect(value(samples(text), "strata_backend_up", { backend: "main" })).toBe(1);
  } finally {
    await pg.start();
  }
  const deadline = Date.now() + 20_000;
  while ((await get("/readyz")).status !== 200) {
    if (Date.now() > deadline) throw new Error(`/readyz stayed failing after PostgreSQL came back: ${await (await get("/readyz")).text()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}, 90_000);
