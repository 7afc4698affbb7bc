// A watch client that stops reading must not hold up writers or other watchers, and
// when it reads again it gets every event, in order, from the history.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as http2 from "node:http2";
import { Etcd3 } from "etcd3";
import { WatchRequestSchema, WatchResponseSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { startStrata, type StrataProcess } from "../support/strata.ts";

let strata: StrataProcess;
beforeAll(async () => {
  strata = await startStrata();
});
afterAll(async () => {
  await strata?.stop();
});

const WRITES = 3000;
const VALUE = Buffer.alloc(4096, 120);

/** a watch stream over raw HTTP/2, so the test decides when its bytes are read */
function rawWatch(endpoint: string, prefix: string) {
  const session = http2.connect(`http://${endpoint}`);
  const req = session.request({
    ":method": "POST",
    ":path": "/etcdserverpb.Watch/Watch",
    "content-type": "application/grpc",
    te: "trailers",
  });
  const msg = toBinary(WatchRequestSchema, create(WatchRequestSchema, {
    requestUnion: { case: "createRequest", value: { key: Buffer.from(prefix), rangeEnd: Buffer.from(prefix.slice(0, -1) + "0") } },
  }));
  const frame = Buffer.alloc(5 + msg.length);
  frame.writeUInt32BE(msg.length, 1);
  frame.set(msg, 5);
  req.write(frame);
  let buf = Buffer.alloc(0);
  const revisions: bigint[] = [];
  req.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
      const len = buf.readUInt32BE(1);
      const resp = fromBinary(WatchResponseSchema, buf.subarray(5, 5 + len));
      for (const ev of resp.events) revisions.push(ev.kv!.modRevision);
      buf = buf.subarray(5 + len);
    }
  });
  return { revisions, pause: () => req.pause(), resume: () => req.resume(), close: () => session.close() };
}

test("a stalled watch client holds up neither writers nor other watchers", async () => {
  const client = new Etcd3({ hosts: strata.endpoint });
  const slow = rawWatch(strata.endpoint, "slow/");
  await new Promise((r) => setTimeout(r, 200));
  slow.pause();

  const fast = await client.watch().prefix("slow/").create();
  const fastRevs: number[] = [];
  fast.on("put", (kv) => fastRevs.push(Number(kv.mod_revision)));

  const started = Date.now();
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < WRITES) await client.put(`slow/k${next++}`).value(VALUE).exec();
  }));
  const writeSeconds = (Date.now() - started) / 1000;
  // 12 MiB of events were produced for a client that reads nothing
  const deadline = Date.now() + 20_000;
  while (fastRevs.length < WRITES && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(fastRevs.length).toBe(WRITES);
  expect(slow.revisions.length).toBeLessThan(WRITES); // it really stalled
  expect(writeSeconds).toBeLessThan(30);

  slow.resume();
  while (slow.revisions.length < WRITES && Date.now() < deadline + 20_000) await new Promise((r) => setTimeout(r, 50));
  expect(slow.revisions.length).toBe(WRITES);
  for (let i = 1; i < slow.revisions.length; i++) expect(slow.revisions[i]! > slow.revisions[i - 1]!).toBe(true);
  expect(slow.revisions.map(Number)).toEqual([...fastRevs].sort((a, b) => a - b));

  await fast.cancel();
  slow.close();
  client.close();
}, 90_000);
