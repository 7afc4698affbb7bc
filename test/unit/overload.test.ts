// Overload is not an outage (docs/overload.md): an embedded database is never taken for
// away, a database server that answers its probe is working, silence is what the event
// loop could have heard, and a request shed for overload is refused before any work.
import { afterAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PutRequestSchema, RangeRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { SqliteBackend } from "../../src/backends/sqlite/sqlite.ts";
import { dueAt, Liveness, requestDeadline, SILENT_MS } from "../../src/mvcc/deadline.ts";
import { EtcdError } from "../../src/mvcc/errors.ts";
import { rangeQuery } from "../../src/mvcc/range.ts";
import { Store } from "../../src/mvcc/store.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** how an expiry was called: "client" (the client's deadline) or "ours" (the database is away) */
function watched(l: Liveness, clientMs?: number) {
  const seen: string[] = [];
  const stop = l.watch(requestDeadline(clientMs), (client) => seen.push(client ? "client" : "ours"));
  return { seen, stop };
}
/** waits until cond holds, at most ms (a bound, not a guess: the test fails if it never does) */
async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(20);
}

describe("deadline", () => {
  test("ours is the request timeout after arrival, unless the client's comes first", () => {
    expect(dueAt({ start: 1000 }, 7000)).toEqual({ at: 8000, client: false });
    expect(dueAt({ start: 1000, client: 3000 }, 7000)).toEqual({ at: 3000, client: true });
    expect(dueAt({ start: 1000, client: 9000 }, 7000)).toEqual({ at: 8000, client: false });
  });
});

describe("liveness", () => {
  test("an embedded database is never away: past the timeout, silent, a request still waits; the client's deadline still ends it", async () => {
    const l = new Liveness({ timeoutMs: 50 });
    const waiting = watched(l);
    const impatient = watched(l, 200);
    await until(() => impatient.seen.length > 0, 10_000);
    expect(impatient.seen).toEqual(["client"]);
    // silent for longer than a server would be allowed
    await sleep(SILENT_MS + 500);
    expect(waiting.seen).toEqual([]);
    waiting.stop();
  });

  test("a database server that answers its probe is working; one that does not is away after its timeout", async () => {
    let alive = true;
    let probes = 0;
    const l = new Liveness({
      timeoutMs: 50,
      probe: () => (probes++, alive ? Promise.resolve() : new Promise(() => {})),
    });
    const busy = watched(l);
    await sleep(SILENT_MS + 1000);
    expect(probes).toBeGreaterThan(0);
    expect(busy.seen).toEqual([]);
    alive = false;
    await until(() => busy.seen.length > 0, 10_000);
    expect(busy.seen).toEqual(["ours"]);
  });

  test("strata's own busy event loop is not the database's silence", async () => {
    // the probe never answers: only the answer that comes in after the stall keeps the database alive
    const l = new Liveness({ timeoutMs: 50, probe: () => new Promise(() => {}) });
    const w = watched(l);
    // the database's answer arrives while the loop is held up, and is read after it
    setTimeout(() => l.answered(), SILENT_MS);
    const stalled = Date.now() + SILENT_MS + 300;
    while (Date.now() < stalled) {
      // the loop is busy: no timer runs
    }
    await sleep(200);
    expect(w.seen).toEqual([]);
    // silence from here on is real: the database is away
    await until(() => w.seen.length > 0, 10_000);
    expect(w.seen).toEqual(["ours"]);
  });
});

describe("load shedding", () => {
  const dir = mkdtempSync(join(tmpdir(), "strata-overload-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const enc = (s: string) => new TextEncoder().encode(s);

  test("client writes past the bound are refused before any work, with etcd's too many requests; the queued ones commit", async () => {
    const backend = await SqliteBackend.open(join(dir, "shed.db"));
    const state = await backend.open();
    const store = new Store(backend, { maxWaiting: 3 });
    store.init(state.revision, state.compactRevision);
    try {
      const puts = Array.from({ length: 10 }, (_, i) =>
        store.put(create(PutRequestSchema, { key: enc(`k${i}`), value: enc("v") }), 0n, requestDeadline()).then(() => "ok", (e: unknown) => e)
      );
      const outcomes = await Promise.all(puts);
      expect(outcomes.slice(0, 3)).toEqual(["ok", "ok", "ok"]);
      for (const e of outcomes.slice(3)) {
        expect(e).toBeInstanceOf(EtcdError);
        expect(e).toMatchObject({ code: "ResourceExhausted", message: "etcdserver: too many requests" });
      }
      // refused means not applied: only the three queued keys are there
      const all = await store.read(rangeQuery(create(RangeRequestSchema, { key: enc("k"), rangeEnd: enc("l") })));
      expect(all.kvs.map((kv) => new TextDecoder().decode(kv.key))).toEqual(["k0", "k1", "k2"]);
      // once the queue has drained, writes are taken again; internal writes (no deadline) are never shed
      await store.put(create(PutRequestSchema, { key: enc("k9"), value: enc("v") }), 0n, requestDeadline());
    } finally {
      await backend.close();
    }
  });
});
