// Issue 17: a Watch stream that never reads again (a hung controller, a half-open
// connection) next to healthy watchers of the same keys, with large values. The healthy
// ones — grpc-js through the etcd3 client (4 MiB receive limit) and a raw HTTP/2 reader
// with default windows — must get every event, in order, exactly once, however often
// they fall behind and catch up while the stalled stream holds its queue full.
// (Before the fix they stopped for good: 4 of 30 events at 1 MB; at 100 KB grpc-js 48 of
// 200 on SQLite, the raw reader 137 of 200 on PostgreSQL.)
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Etcd3 } from "etcd3";
import { prefixEnd, rawWatch } from "../support/raw-watch.ts";
import { until } from "../support/wait.ts";
import { startStrata, type StrataProcess } from "../support/strata.ts";

let strata: StrataProcess;
beforeAll(async () => {
  strata = await startStrata();
});
afterAll(async () => {
  await strata?.stop();
});


/** each case writes about 20–30 MB: several times the queue a stalled stream may fill */
for (const [label, valueBytes, writes] of [["100 KB", 100 * 1024, 200], ["1 MB", 1024 * 1024, 30]] as const) {
  test(`a never-reading watch stream silences no healthy watcher (${label} values)`, async () => {
    const prefix = `stall-${valueBytes}/`;
    const client = new Etcd3({ hosts: strata.endpoint });
    const stalled = rawWatch(strata.endpoint);
    const healthy = rawWatch(strata.endpoint);
    for (const w of [stalled, healthy]) {
      w.send({ requestUnion: { case: "createRequest", value: { key: Buffer.from(prefix), rangeEnd: prefixEnd(prefix) } } });
    }
    await until(() => stalled.responses.length > 0 && healthy.responses.length > 0, 5000);
    stalled.pause();
    const viaGrpcJs: string[] = [];
    const watcher = await client.watch().prefix(prefix).create();
    watcher.on("put", (kv) => viaGrpcJs.push(kv.mod_revision));

    const value = Buffer.alloc(valueBytes, 97);
    const written: string[] = [];
    let next = 0;
    // the healthy raw reader also pauses for the first half (a GC pause, a busy node), so
    // it surely falls behind after the stalled stream did
    healthy.pause();
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < writes) {
        if (next === writes / 2) healthy.resume();
        const r = await client.put(`${prefix}k${next++ % 10}`).value(value).exec();
        written.push(r.header.revision);
      }
    }));
    written.sort((a, b) => Number(BigInt(a) - BigInt(b)));
    const viaRaw = () => healthy.responses.flatMap((r) => r.events.map((e) => String(e.kv!.modRevision)));
    await until(() => viaGrpcJs.length >= writes && viaRaw().length >= writes, 20_000);
    // in order and exactly once: the very revisions written
    expect(viaGrpcJs).toEqual(written);
    expect(viaRaw()).toEqual(written);
    // the stalled stream really stalled
    const stalledGot = stalled.responses.flatMap((r) => r.events).length;
    expect(stalledGot).toBeLessThan(writes);

    await watcher.cancel();
    stalled.close();
    healthy.close();
    client.close();
  }, 60_000);
}
