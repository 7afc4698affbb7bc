// The same sources run on Deno (node:sqlite behind the SQLite shim): strata serves a
// real client there too, with history, watches and lease expiry, and its metrics.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Etcd3 } from "etcd3";
import { startStrata, type StrataProcess } from "../support/strata.ts";

let strata: StrataProcess;
beforeAll(async () => {
  strata = await startStrata([], undefined, "deno");
}, 90_000);
afterAll(async () => {
  await strata?.stop();
}, 30_000);

test("strata on Deno: put, get at a revision, watch, lease expiry, restart", async () => {
  const c = new Etcd3({ hosts: strata.endpoint });
  const first = await c.put("deno/a").value("1").exec();
  await c.put("deno/a").value("2").exec();
  const old = await c.kv.range({ key: Buffer.from("deno/a"), revision: first.header.revision } as never);
  expect(old.kvs[0]!.value.toString()).toBe("1");
  // ranges of keys are read on read threads, each with its own node:sqlite connection
  expect(await c.getAll().prefix("deno/").strings()).toEqual({ "deno/a": "2" });

  const seen: string[] = [];
  const watcher = await c.watch().prefix("deno/").create();
  watcher.on("put", (kv) => seen.push(`put ${kv.key}`));
  watcher.on("delete", (kv) => seen.push(`delete ${kv.key}`));
  const lease = c.lease(2, { autoKeepAlive: false });
  await lease.put("deno/leased").value("x").exec();
  const deadline = Date.now() + 10_000;
  while (!seen.includes("delete deno/leased") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(seen).toEqual(["put deno/leased", "delete deno/leased"]);
  await watcher.cancel();
  c.close();
  // the HTTP endpoints beside the API run there too
  expect(await (await fetch(`${strata.metrics}/readyz`)).text()).toBe("ok\n");
  const metrics = await (await fetch(`${strata.metrics}/metrics`)).text();
  expect(metrics).toMatch(/^grpc_server_handled_total\{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"\} 3$/m);
  expect((await fetch(`${strata.metrics}/`)).headers.get("content-type")).toStartWith("text/html");
  // and plain HTTP on the client port (node:http over a socket the protocol sniffer handed on)
  const range = await fetch(`http://${strata.endpoint}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: Buffer.from("deno/a").toString("base64") }) });
  expect(((await range.json()) as { kvs: Array<{ value: string }> }).kvs[0]!.value).toBe(Buffer.from("2").toString("base64"));

  // the node:sqlite file survives a restart with its revisions
  strata.kill();
  await strata.restart();
  const again = new Etcd3({ hosts: strata.endpoint });
  const now = await again.get("deno/a").exec();
  expect(now.kvs[0]!.value.toString()).toBe("2");
  expect(BigInt(now.header.revision)).toBe(BigInt(first.header.revision) + 3n);
  again.close();
}, 60_000);
