// What is particular to the NATS backend, on a real nats-server: batches larger than a
// NATS message travel as chunks every process reassembles, also when two append at once; compaction stores a snapshot
// and purges the log, and a new process starts from snapshot plus tail with the same
// answers; a process the purge left behind reloads the snapshot and tells its watchers;
// the copy a killed process left in the temporary directory is removed by the next one;
// an append whose acknowledgement was lost is sent again and answered once.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { createConnection, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { connect, type JetStreamManager, type NatsConnection } from "nats";
import { prefixEnd, rawWatch } from "../support/raw-watch.ts";
import { freshDatabase, startStrata, type StrataProcess } from "../support/strata.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-nats-test-"));
let nc: NatsConnection;
let jsm: JetStreamManager;
const procs: StrataProcess[] = [];
const clients: Etcd3[] = [];

async function strata(url: string): Promise<Etcd3> {
  const p = await startStrata([], url);
  procs.push(p);
  const c = new Etcd3({ hosts: p.endpoint });
  clients.push(c);
  return c;
}

/** the stream a backend URL keeps its log in, and its first and last sequence */
async function stream(url: string) {
  const name = `strata-${new URL(url).searchParams.get("bucket")}`;
  const { state } = await jsm.streams.info(name);
  return { name, first: state.first_seq, last: state.last_seq };
}

let url: string;
beforeAll(async () => {
  // a snapshot at every compaction, instead of after 10000 log entries
  url = `${await freshDatabase("nats", dir)}&snapshot-count=1`;
  nc = await connect({ servers: new URL(url).host });
  jsm = await nc.jetstreamManager();
}, 60_000);
afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(procs.map((p) => p.stop()));
  await nc?.close();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe("NATS backend", () => {
  test("batches larger than a NATS message are appended in chunks and read back whole by every process", async () => {
    const bucketUrl = await freshDatabase("nats", dir);
    const [a, b] = [await strata(bucketUrl), await strata(bucketUrl)];
    const big = (i: number) => Buffer.alloc(1_400_000, `value ${i} `);
    // sent together, they are committed as one batch of about 5.6 MiB
    await Promise.all([0, 1, 2, 3].map((i) => a.put(`big/${i}`).value(big(i)).exec()));
    for (const i of [0, 1, 2, 3]) expect(Buffer.compare((await b.get(`big/${i}`).buffer())!, big(i))).toBe(0);
    const s = await stream(bucketUrl);
    let chunks = 0;
    for (let seq = s.first; seq <= s.last; seq++) {
      const m = await jsm.streams.getMessage(s.name, { seq });
      expect(m.data.length).toBeLessThanOrEqual(nc.info!.max_payload);
      if (m.header?.has("Strata-Chunk")) chunks++;
    }
    expect(chunks).toBeGreaterThanOrEqual(6);
    // a process started afterwards replays the chunks from the log
    const c = await strata(bucketUrl);
    for (const i of [0, 1, 2, 3]) expect(Buffer.compare((await c.get(`big/${i}`).buffer())!, big(i))).toBe(0);
    // far fewer log entries than snapshot-count (10000): a compaction neither snapshots nor purges
    await c.kv.compact({ revision: (await c.get("big/0").exec()).header.revision, physical: true } as never);
    expect((await stream(bucketUrl)).first).toBe(1);
  }, 60_000);

  test("two processes appending chunked batches at once keep every acknowledged write and end with the same data", async () => {
    const bucketUrl = await freshDatabase("nats", dir);
    const both = [await strata(bucketUrl), await strata(bucketUrl)];
    const acked = new Map<string, string>();
    await Promise.all(both.flatMap((c, p) => [
      (async () => {
        for (let i = 0; i < 6; i++) {
          const key = `race/big-${p}-${i}`;
          acked.set(key, (await c.put(key).value(Buffer.alloc(1_200_000, `${p}${i}`)).exec()).header.revision);
        }
      })(),
      (async () => {
        for (let i = 0; i < 40; i++) {
          const key = `race/small-${p}-${i}`;
          acked.set(key, (await c.put(key).value("s").exec()).header.revision);
        }
      })(),
    ]));
    const views = await Promise.all(both.map(async (c) =>
      (await c.kv.range({ key: Buffer.from("race/"), range_end: prefixEnd("race/"), keys_only: true } as never)).kvs
        .map((kv) => `${kv.key}@${kv.mod_revision}`)
    ));
    expect(views[1]).toEqual(views[0]!);
    expect(views[0]!.length).toBe(acked.size);
    for (const [key, rev] of acked) expect(views[0]).toContain(`${key}@${rev}`);
    for (const c of both) {
      for (let p = 0; p < 2; p++) {
        for (let i = 0; i < 6; i++) expect((await c.get(`race/big-${p}-${i}`).buffer())!.equals(Buffer.alloc(1_200_000, `${p}${i}`))).toBe(true);
      }
    }
    // one revision per write, in one order
    expect(new Set(acked.values()).size).toBe(acked.size);
  }, 60_000);

  test("an append whose acknowledgement was lost is sent again, deduplicated, and acknowledged once", async () => {
    const bucketUrl = await freshDatabase("nats", dir);
    // a proxy between strata and NATS that can cut the connection right after a publish went through
    const target = new URL(bucketUrl);
    let armed = false;
    /** the message ID of each append that went through, in order */
    const sent: string[] = [];
    const sockets = new Set<Socket>();
    const proxy = createServer((client) => {
      const server = createConnection(Number(target.port), target.hostname);
      sockets.add(client).add(server);
      let answering = true;
      client.on("data", (d) => {
        server.write(d);
        const text = d.toString("latin1");
        if (!text.includes(`PUB strata.${target.searchParams.get("bucket")}.log `)) return;
        sent.push(/Nats-Msg-Id: (\S+)/i.exec(text)?.[1] ?? "?");
        if (armed) {
          armed = false;
          // NATS stores it and answers, but the answer never gets back
          answering = false;
          setTimeout(() => (client.destroy(), server.destroy()), 50);
        }
      });
      server.on("data", (d) => answering && client.write(d));
      for (const s of [client, server]) s.on("error", () => {}).on("close", () => (client.destroy(), server.destroy()));
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    try {
      const c = await strata(bucketUrl.replace(target.host, `127.0.0.1:${(proxy.address() as { port: number }).port}`));
      await c.put("lost/warm").value("up").exec();
      const before = await stream(bucketUrl);
      armed = true;
      const cut = sent.length;
      const put = await c.put("lost/k").value("v1").exec();
      expect(armed).toBe(false);
      // sent twice with one message ID, stored once
      expect(sent.slice(cut)).toEqual([sent[cut]!, sent[cut]!]);
      expect((await stream(bucketUrl)).last).toBe(before.last + 1);
      const kv = (await c.get("lost/k").exec()).kvs[0]!;
      expect([kv.value.toString(), kv.mod_revision]).toEqual(["v1", put.header.revision]);
    } finally {
      for (const s of sockets) s.destroy();
      proxy.close();
    }
  }, 60_000);

  test("compaction stores a snapshot and purges the log; a new process starts from it and answers the same", async () => {
    const a = await strata(url);
    const revs: string[] = [];
    for (let i = 1; i <= 5; i++) revs.push((await a.put("snap/k").value(`v${i}`).exec()).header.revision);
    await a.put("snap/other").value("x").exec();
    await a.kv.compact({ revision: revs[2], physical: true } as never);
    const purged = await stream(url);
    expect(purged.first).toBeGreaterThan(1);
    const snapshots = await (await nc.jetstream().views.os(`strata-${new URL(url).searchParams.get("bucket")}-snapshots`)).list();
    expect(snapshots.length).toBe(1);
    // the tail after the snapshot
    await a.put("snap/k").value("v6").exec();
    await a.delete().key("snap/other").exec();

    const c = await strata(url);
    const answers = async (cl: Etcd3) => ({
      latest: await cl.getAll().prefix("snap/").exec(),
      atCompaction: await cl.get("snap/k").revision(revs[2]!).exec(),
      after: await cl.get("snap/k").revision(revs[3]!).exec(),
      below: await cl.get("snap/k").revision(revs[1]!).exec().then(() => "read", (e: Error) => e.message),
    });
    const [fromA, fromC] = [await answers(a), await answers(c)];
    expect(fromC).toEqual(fromA);
    expect(fromC.below).toContain("required revision has been compacted");
    expect(fromC.latest.kvs.map((kv) => `${kv.key}=${kv.value}`)).toEqual(["snap/k=v6"]);
    // history after the compaction is there for watchers on the new process
    const w = rawWatch(procs.at(-1)!.endpoint);
    w.send({ requestUnion: { case: "createRequest", value: { key: Buffer.from("snap/"), rangeEnd: prefixEnd("snap/"), startRevision: BigInt(revs[3]!) } } });
    const deadline = Date.now() + 10_000;
    while (w.responses.flatMap((r) => r.events).length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(w.responses.flatMap((r) => r.events).map((e) => `${e.type} ${Buffer.from(e.kv!.key)} ${Buffer.from(e.kv!.value)}`)).toEqual([
      "0 snap/k v4", "0 snap/k v5", "0 snap/other x", "0 snap/k v6", "1 snap/other ",
    ]);
    w.close();
  }, 60_000);

  test("a process the purge left behind reloads the newest snapshot; its watcher gets every event or a compaction cancel, never a gap", async () => {
    const bucketUrl = `${await freshDatabase("nats", dir)}&snapshot-count=1`;
    const a = await strata(bucketUrl);
    const b = await strata(bucketUrl);
    const lagging = procs.at(-1)!;
    await a.put("lag/k").value("1").exec();
    const start = BigInt((await b.get("lag/k").exec()).header.revision) + 1n;
    const w = rawWatch(lagging.endpoint);
    w.send({ requestUnion: { case: "createRequest", value: { key: Buffer.from("lag/"), rangeEnd: prefixEnd("lag/"), startRevision: start } } });
    await new Promise((r) => setTimeout(r, 300));

    process.kill(lagging.pid(), "SIGSTOP");
    try {
      // as the server does with the consumer of a process gone for a minute
      const s = await stream(bucketUrl);
      for (const ci of await jsm.consumers.list(s.name).next()) {
        if (ci.name.includes(`_${lagging.pid()}_`)) await jsm.consumers.delete(s.name, ci.name);
      }
      await a.put("lag/k").value("2").exec();
      const last = await a.put("lag/k").value("3").exec();
      await a.kv.compact({ revision: last.header.revision, physical: true } as never);
      expect((await stream(bucketUrl)).first).toBeGreaterThan((await stream(bucketUrl)).last);
      await a.put("lag/k").value("4").exec();
    } finally {
      process.kill(lagging.pid(), "SIGCONT");
    }

    let value: string | null = null;
    const deadline = Date.now() + 60_000;
    while (value !== "4" && Date.now() < deadline) {
      value = await b.get("lag/k").string().catch(() => null);
      if (value !== "4") await new Promise((r) => setTimeout(r, 200));
    }
    expect(value).toBe("4");
    expect(lagging.stderr()).toContain("reloading from the newest snapshot");
    const until = Date.now() + 10_000;
    const settled = () => w.responses.some((r) => r.canceled) || w.responses.flatMap((r) => r.events).length >= 3;
    while (!settled() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    const events = w.responses.flatMap((r) => r.events).map((e) => Buffer.from(e.kv!.value).toString());
    const cancel = w.responses.find((r) => r.canceled);
    if (cancel) {
      expect(cancel.compactRevision).toBeGreaterThan(start);
      expect(["2", "3", "4"].slice(0, events.length)).toEqual(events);
    } else {
      expect(events).toEqual(["2", "3", "4"]);
    }
    w.close();
  }, 120_000);

  test("the copy a process killed outright left behind is removed when the next one starts", async () => {
    const copies = () => new Set(readdirSync(tmpdir()).filter((n) => n.startsWith("strata-nats-copy-")));
    const before = copies();
    const p = await startStrata([], url);
    const left = [...copies()].filter((n) => !before.has(n));
    expect(left.length).toBe(1);
    p.kill();
    await new Promise((r) => setTimeout(r, 500));
    const dir = join(tmpdir(), left[0]!);
    expect(existsSync(dir)).toBe(true);
    // old enough not to belong to a process that is still starting
    utimesSync(dir, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    await strata(url);
    expect(existsSync(dir)).toBe(false);
    await p.stop();
  }, 60_000);
});
