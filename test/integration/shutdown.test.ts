// SIGTERM while clients write, watch and keep a lease alive: the watch and the keep-alive
// end with Unavailable "strata is shutting down" (so clients reconnect elsewhere), every
// acknowledged write is there after a restart, strata exits 0 and its port is closed.
import { afterAll, expect, test } from "bun:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { connect } from "node:net";
import { KV, Lease, Watch } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { b, prefixEnd, sleep } from "../support/differential.ts";
import { etcdClient, startStrata, type StrataProcess } from "../support/strata.ts";

let strata: StrataProcess | undefined;
afterAll(async () => {
  await strata?.stop();
}, 30_000);

/** how a server stream ended: the responses it gave, and its error if it failed */
async function outcome(stream: AsyncIterable<unknown>): Promise<{ responses: number; error?: ConnectError }> {
  let responses = 0;
  try {
    for await (const _ of stream) responses++;
    return { responses };
  } catch (err) {
    return { responses, error: ConnectError.from(err) };
  }
}

function portRefuses(endpoint: string): Promise<boolean> {
  const [host, port] = endpoint.split(":");
  return new Promise((resolve) => {
    const s = connect({ host, port: Number(port) });
    s.on("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNREFUSED"));
  });
}

test("SIGTERM: streams end with Unavailable, acknowledged writes are durable, exit 0, port closed", async () => {
  strata = await startStrata();
  const transport = createGrpcTransport({ baseUrl: `http://${strata.endpoint}` });
  const kv = createClient(KV, transport);
  const lease = createClient(Lease, transport);
  const watch = createClient(Watch, transport);

  let done = false;
  async function* watchRequests() {
    yield { requestUnion: { case: "createRequest" as const, value: { key: b("sd/"), rangeEnd: prefixEnd("sd/") } } };
    while (!done) await sleep(50);
  }
  const watched = outcome(watch.watch(watchRequests()));
  const { ID } = await lease.leaseGrant({ TTL: 60n });
  async function* keepAlives() {
    while (!done) {
      yield { ID };
      await sleep(100);
    }
  }
  const keptAlive = outcome(lease.leaseKeepAlive(keepAlives()));

  // writers run until strata stops answering; what it acknowledged must survive
  const acked = new Map<string, string>();
  const writers = Array.from({ length: 8 }, async (_, w) => {
    for (let i = 0; ; i++) {
      const key = `sd/${w}/${i}`;
      try {
        await kv.put({ key: b(key), value: b(`value ${i}`) });
      } catch {
        return;
      }
      acked.set(key, `value ${i}`);
    }
  });
  while (acked.size < 200) await sleep(10);

  const exitCode = await strata.terminate();
  await Promise.all(writers);
  done = true;
  expect(exitCode).toBe(0);
  expect(strata.stderr()).toContain('"msg":"stopped"');

  const w = await watched;
  expect(w.responses).toBeGreaterThan(0);
  expect(w.error?.code).toBe(Code.Unavailable);
  expect(w.error?.rawMessage).toBe("strata is shutting down");
  const k = await keptAlive;
  expect(k.responses).toBeGreaterThan(0);
  expect(k.error?.code).toBe(Code.Unavailable);
  expect(k.error?.rawMessage).toBe("strata is shutting down");

  expect(await portRefuses(strata.endpoint)).toBe(true);

  await strata.restart();
  const c = etcdClient(strata.endpoint);
  try {
    const stored = await c.getAll().prefix("sd/").strings();
    const missing = [...acked].filter(([key, value]) => stored[key] !== value);
    expect(missing).toEqual([]);
    expect(acked.size).toBeGreaterThanOrEqual(200);
  } finally {
    c.close();
  }
}, 90_000);
