// Issue 22: what a hostile client can do to strata through its HTTP/2 layer, over h2c and
// TLS, with a real etcd attacked the same way in the same test. Each attack runs from raw
// frames (test/support/h2-client.ts), bounded in frames and in time, while a healthy
// neighbour does put+get on a connection of its own. For strata it asserts the RFC's
// answer to the attacker, a neighbour without a failed call, and memory growth within
// MAX_MEMORY_GROWTH_MIB; etcd's answers are printed beside strata's, and asserted where etcd
// gives the same (a too-large header list, an oversized message, malformed headers on
// TLS, a PING flood). Before the fixes: empty CONTINUATION frames took strata to 2.7 GB on
// four connections, rapid reset and control-frame floods were read without end, 200
// streams that never give window grew memory by 25 MB/s without a plateau, and 24 Txns of
// 16 large ranges each were all held (+2.5 GB; etcd 3.4 holds them too, +1.5 GB).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import type { Etcd3 } from "etcd3";
import { frame, Setting } from "../../src/api/h2/frames.ts";
import type { HeaderList } from "../../src/api/h2/hpack.ts";
import { PutRequestSchema, RangeRequestSchema, TxnRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { makeCa, makeCert, read } from "../support/certs.ts";
import { startEtcd } from "../support/etcd.ts";
import { ErrorCode, Flag, FrameType, H2TestClient, type TestClientTls } from "../support/h2-client.ts";
import { type ClientTls, etcdClient, startStrata } from "../support/strata.ts";

/** the bound on what any one attack may add to strata's resident memory */
const MAX_MEMORY_GROWTH_MIB = 256;
/** a neighbour's put or get slower than this counts as failed (etcd's clients default to 5 s dial/request timeouts) */
const NEIGHBOUR_DEADLINE_MS = 5000;
/** strata resets a response that does not move for this long, and a large read waits this long for room */
const STALL = "2s";

const dir = mkdtempSync(join(tmpdir(), "strata-h2-attacks-"));

interface Target {
  name: "strata" | "etcd";
  pid(): number;
  /** a raw HTTP/2 connection (over TLS with the client certificate when the target serves TLS) */
  connect(settings?: Array<[number, number]>): Promise<H2TestClient>;
  /** an etcd client of its own: the neighbour */
  client(): Etcd3;
  stop(): Promise<void>;
}

/**
 * Anonymous resident memory (heaps, buffers: what an attack can make a server hold), not
 * RSS: strata's read threads map the SQLite file, and a read of a 20 MB range put up to
 * that much file-backed page cache in RSS per thread (+30 MiB of RSS, while the anonymous
 * growth was the same as before). etcd's bbolt file is mapped too.
 */
function memoryMiB(pid: number): number {
  return Number(/RssAnon:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
}

async function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

interface Outcome<T> {
  attacker: T;
  memoryGrowthMiB: number;
  neighbourCalls: number;
  neighbourFailures: string[];
}

/**
 * Runs `attack` against `t` while a neighbour does put+get on its own connection and the
 * target's anonymous memory is sampled. The neighbour keeps going after the attack until it has made
 * a few calls, so it always ran beside the attack's effects.
 */
async function underAttack<T>(t: Target, attack: () => Promise<T>): Promise<Outcome<T>> {
  const neighbour = t.client();
  await neighbour.put("neighbour/warm").value("1").exec();
  const before = memoryMiB(t.pid());
  let peak = before;
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, memoryMiB(t.pid()));
    } catch {
      // the process ended: the neighbour's failures say so
    }
  }, 25);
  let attacking = true;
  let calls = 0;
  const failures: string[] = [];
  const loop = (async () => {
    for (let i = 0; i < 10_000 && (attacking || calls < 5) && failures.length < 5; i++) {
      try {
        await withDeadline(neighbour.put(`neighbour/${i % 10}`).value(String(i)).exec(), NEIGHBOUR_DEADLINE_MS, "put");
        const got = await withDeadline(neighbour.get(`neighbour/${i % 10}`).string(), NEIGHBOUR_DEADLINE_MS, "get");
        if (got !== String(i)) throw new Error(`get answered ${got}, not ${i}`);
        calls++;
      } catch (err) {
        failures.push(String(err));
      }
    }
  })();
  try {
    const attacker = await attack();
    attacking = false;
    await loop;
    return { attacker, memoryGrowthMiB: Math.round(peak - before), neighbourCalls: calls, neighbourFailures: failures };
  } finally {
    attacking = false;
    await loop;
    clearInterval(sampler);
    neighbour.close();
  }
}

/** Waits until every stream ended (or the connection did); how many ended which way ("RST_STREAM 11", "grpc-status 8"). */
async function streamOutcomes(c: H2TestClient, ids: number[]): Promise<Record<string, number>> {
  const ended = (id: number) => c.resetCode(id) !== undefined || c.grpcStatus(id) !== undefined;
  await c.until(() => c.closed || ids.every(ended), 60_000, "every stream to end");
  const outcome: Record<string, number> = {};
  for (const id of ids) {
    const key = c.resetCode(id) !== undefined ? `RST_STREAM ${c.resetCode(id)}` : `grpc-status ${c.grpcStatus(id)?.status}`;
    outcome[key] = (outcome[key] ?? 0) + 1;
  }
  return outcome;
}

/** strata came through: its neighbour never failed, its memory stayed bounded */
function expectUnharmed(o: Outcome<unknown>): void {
  expect(o.neighbourFailures).toEqual([]);
  expect(o.neighbourCalls).toBeGreaterThanOrEqual(5);
  expect(o.memoryGrowthMiB).toBeLessThanOrEqual(MAX_MEMORY_GROWTH_MIB);
}

function report(transport: string, attack: string, outcomes: Record<string, Outcome<unknown>>): void {
  const line = Object.entries(outcomes).map(([name, o]) => ({
    target: name, attacker: o.attacker, memoryGrowthMiB: o.memoryGrowthMiB, neighbour: { calls: o.neighbourCalls, failures: o.neighbourFailures.length },
  }));
  console.log(`h2-attacks ${transport} ${attack}: ${JSON.stringify(line)}`);
}

const grpcRequest = (path: string): HeaderList => [
  [":method", "POST"], [":scheme", "http"], [":path", path], [":authority", "localhost"], ["content-type", "application/grpc"], ["te", "trailers"],
];
const grpcMessage = (bytes: Uint8Array) => {
  const m = Buffer.alloc(5 + bytes.length);
  m.writeUInt32BE(bytes.length, 1);
  m.set(bytes, 5);
  return m;
};
const RANGE_ONE = grpcMessage(toBinary(RangeRequestSchema, create(RangeRequestSchema, { key: Buffer.from("neighbour/1") })));

/** What the attacker's connection saw at the end. */
function ending(c: H2TestClient) {
  const g = c.goAway();
  return { closed: c.closed, goAway: g && { code: g.code, reason: g.reason } };
}

/** Writes `batch` up to `times` times, each once the last was taken, until the connection closes (or stops taking bytes). */
async function flood(c: H2TestClient, batch: Buffer, times: number): Promise<number> {
  let sent = 0;
  for (; sent < times && !c.closed; sent++) {
    c.write(batch);
    try {
      await withDeadline(c.drained(), 5000, "the server to read");
    } catch {
      break;
    }
  }
  return sent;
}

/** Waits until the connection closed, or `ms` passed (etcd keeps reading where strata stops). */
async function closedWithin(c: H2TestClient, ms: number): Promise<void> {
  await c.until(() => c.closed, ms).catch(() => {});
}

// ---- the attacks ----

/** HEADERS without END_HEADERS, then empty CONTINUATION frames, on four connections at once (up to 100,000 each) */
async function emptyContinuations(t: Target) {
  return await Promise.all(Array.from({ length: 4 }, async () => {
    const c = await t.connect();
    c.write(frame(FrameType.HEADERS, 0, 1, c.encode(grpcRequest("/etcdserverpb.KV/Range"))));
    const empty = frame(FrameType.CONTINUATION, 0, 1, new Uint8Array(0));
    const batches = await flood(c, Buffer.concat(Array(1000).fill(empty)), 100);
    await closedWithin(c, t.name === "strata" ? 5000 : 200);
    c.close();
    return { ...ending(c), frames: batches * 1000 };
  }));
}

/** HEADERS + DATA (a Range) + RST_STREAM, up to 20,000 streams on one connection (CVE-2023-44487) */
async function rapidReset(t: Target) {
  const c = await t.connect();
  let opened = 0;
  for (let batch = 0; batch < 40 && !c.closed; batch++) {
    const frames: Buffer[] = [];
    for (let i = 0; i < 500; i++, opened++) {
      const id = c.nextId();
      frames.push(
        frame(FrameType.HEADERS, Flag.END_HEADERS, id, c.encode(grpcRequest("/etcdserverpb.KV/Range"))),
        frame(FrameType.DATA, Flag.END_STREAM, id, RANGE_ONE),
        frame(FrameType.RST_STREAM, 0, id, Buffer.from([0, 0, 0, ErrorCode.CANCEL])),
      );
    }
    if ((await flood(c, Buffer.concat(frames), 1)) === 0) break;
  }
  await closedWithin(c, t.name === "strata" ? 5000 : 200);
  c.close();
  // the streams the server took up: the GOAWAY's last stream, or all that were sent
  return { ...ending(c), opened, taken: (c.goAway() ? c.goAway()!.lastStreamId + 1 : 2 * opened) / 2 };
}

/**
 * A header list of 20 MB decoded (over strata's 1 MiB and etcd's 16 MiB) from a 9 KB block:
 * a 4,000-byte field put in the dynamic table, then named 5,000 times; then a Range on
 * the same connection, whose block uses the table too
 */
async function headerListTooLarge(t: Target) {
  const c = await t.connect();
  const entry = Buffer.concat([Buffer.from([0x40, 5]), Buffer.from("x-big"), Buffer.from([0x7f, ((4000 - 127) & 0x7f) | 0x80, (4000 - 127) >> 7]), Buffer.alloc(4000, 0x76)]);
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.concat([c.encode(grpcRequest("/etcdserverpb.KV/Range")), entry])));
  c.write(frame(FrameType.DATA, Flag.END_STREAM, 1, RANGE_ONE));
  const block = Buffer.concat([c.encode(grpcRequest("/etcdserverpb.KV/Range")), Buffer.alloc(5000, 0x80 | 62)]);
  for (let offset = 0; offset < block.length; offset += 16_000) {
    const last = offset + 16_000 >= block.length;
    c.write(frame(offset === 0 ? FrameType.HEADERS : FrameType.CONTINUATION, last ? Flag.END_HEADERS : 0, 3, block.subarray(offset, offset + 16_000)));
  }
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS, 5, Buffer.concat([c.encode(grpcRequest("/etcdserverpb.KV/Range")), Buffer.from([0x80 | 62])])));
  c.write(frame(FrameType.DATA, Flag.END_STREAM, 5, RANGE_ONE));
  await c.until(() => c.closed || (c.resetCode(3) !== undefined && c.grpcStatus(5) !== undefined), 10_000).catch(() => {});
  c.close();
  return { tooLarge: c.resetCode(3), next: c.grpcStatus(5)?.status, ...ending(c) };
}

/** A Put whose length prefix announces 4 GiB, and then nothing: the answer must not wait for the body */
async function oversizedMessage(t: Target) {
  const c = await t.connect();
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, c.encode(grpcRequest("/etcdserverpb.KV/Put"))));
  c.write(frame(FrameType.DATA, 0, 1, Buffer.concat([Buffer.from([0, 0xff, 0xff, 0xff, 0xff]), toBinary(PutRequestSchema, create(PutRequestSchema, { key: Buffer.from("k") }))])));
  await c.until(() => c.grpcStatus(1) !== undefined || c.closed, 10_000).catch(() => {});
  c.close();
  return { ...c.grpcStatus(1), ...ending(c) };
}

/** Requests with RFC 9113 §8.2–8.3 violations, one stream each on one connection */
const MALFORMED: Record<string, HeaderList> = {
  "uppercase name": [...grpcRequest("/etcdserverpb.KV/Range"), ["X-Upper", "1"]],
  "duplicate :path": [...grpcRequest("/etcdserverpb.KV/Range"), [":path", "/etcdserverpb.KV/Range"] as [string, string]].sort(([a], [b]) => Number(b.startsWith(":")) - Number(a.startsWith(":"))),
  "connection header": [...grpcRequest("/etcdserverpb.KV/Range"), ["connection", "keep-alive"]],
  "no :scheme": grpcRequest("/etcdserverpb.KV/Range").filter(([n]) => n !== ":scheme"),
  "pseudo-header after a regular one": [["content-type", "application/grpc"], ...grpcRequest("/etcdserverpb.KV/Range").filter(([n]) => n !== "content-type")],
};
async function malformedHeaders(t: Target) {
  const c = await t.connect();
  const ids: Record<string, number> = {};
  for (const [name, list] of Object.entries(MALFORMED)) {
    const id = (ids[name] = c.nextId());
    c.write(frame(FrameType.HEADERS, Flag.END_HEADERS, id, c.encode(list)));
    c.write(frame(FrameType.DATA, Flag.END_STREAM, id, RANGE_ONE));
  }
  const answered = (id: number) => c.resetCode(id) !== undefined || c.grpcStatus(id) !== undefined;
  await c.until(() => c.closed || Object.values(ids).every(answered), 10_000).catch(() => {});
  c.close();
  return Object.fromEntries(Object.entries(ids).map(([name, id]) => [name, c.resetCode(id) ?? `grpc-status ${c.grpcStatus(id)?.status}`]));
}

/** Frames that ask for nothing, on one connection with a Watch stream open: up to 50,000 */
const FLOODS: Record<string, () => Buffer> = {
  PING: () => frame(FrameType.PING, 0, 0, Buffer.alloc(8)),
  SETTINGS: () => frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(0)),
  WINDOW_UPDATE: () => frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from([0, 0, 0, 1])),
  PRIORITY: () => frame(FrameType.PRIORITY, 0, 1, Buffer.from([0, 0, 0, 0, 16])),
  "unknown-type": () => frame(0x20, 0, 0, Buffer.alloc(0)),
  "empty DATA": () => frame(FrameType.DATA, 0, 1, Buffer.alloc(0)),
};
async function controlFlood(t: Target, kind: string) {
  const c = await t.connect();
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, c.encode(grpcRequest("/etcdserverpb.Watch/Watch"))));
  const batches = await flood(c, Buffer.concat(Array(1000).fill(FLOODS[kind]!())), 50);
  await closedWithin(c, t.name === "strata" ? 5000 : 200);
  c.close();
  return { ...ending(c), frames: batches * 1000 };
}

// ---- the runs ----

let tlsFiles: { ca: string; server: { cert: string; key: string }; client: { cert: string; key: string } };
beforeAll(() => {
  const ca = makeCa(dir, "ca");
  tlsFiles = { ca: ca.cert, server: makeCert(dir, "server", ca, "server"), client: makeCert(dir, "client", ca, "client") };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

for (const transport of ["h2c", "TLS"] as const) {
  describe(transport, () => {
    let strata: Target;
    let etcd: Target;
    beforeAll(async () => {
      const secure = transport === "TLS";
      const clientTls: ClientTls | undefined = secure ? { ca: read(tlsFiles.ca), cert: read(tlsFiles.client.cert), key: read(tlsFiles.client.key) } : undefined;
      const raw: TestClientTls | undefined = clientTls;
      const tlsArgs = secure ? ["--cert-file", tlsFiles.server.cert, "--key-file", tlsFiles.server.key, "--trusted-ca-file", tlsFiles.ca, "--client-cert-auth"] : [];
      const [s, e] = await Promise.all([
        startStrata(["--stalled-stream-timeout", STALL, ...tlsArgs], undefined, "bun", clientTls),
        startEtcd([], secure ? { ca: tlsFiles.ca, cert: tlsFiles.server.cert, key: tlsFiles.server.key, client: tlsFiles.client } : undefined),
      ]);
      const target = (name: Target["name"], endpoint: string, pid: () => number, stop: () => Promise<unknown>): Target => ({
        name,
        pid,
        connect: async (settings = []) => {
          const c = await H2TestClient.connect(Number(endpoint.split(":")[1]), settings, raw);
          await c.until(() => c.frames.some((f) => f.type === FrameType.SETTINGS), 5000, "the server's SETTINGS");
          return c;
        },
        client: () => etcdClient(endpoint, clientTls),
        stop: async () => void (await stop()),
      });
      strata = target("strata", s.endpoint, s.pid, s.stop);
      etcd = target("etcd", e.endpoint, e.pid, e.stop);
    }, 60_000);
    afterAll(async () => {
      await Promise.all([strata?.stop(), etcd?.stop()]);
    }, 30_000);

    test("empty CONTINUATION frames on four connections: ENHANCE_YOUR_CALM after 128 frames each", async () => {
      const s = await underAttack(strata, () => emptyContinuations(strata));
      const e = await underAttack(etcd, () => emptyContinuations(etcd));
      report(transport, "empty CONTINUATION", { strata: s, etcd: e });
      for (const c of s.attacker) {
        expect(c.goAway).toEqual({ code: ErrorCode.ENHANCE_YOUR_CALM, reason: "header block in more than 128 frames" });
        expect(c.closed).toBe(true);
      }
      expectUnharmed(s);
    }, 60_000);

    test("rapid reset (HEADERS, DATA, RST_STREAM): ENHANCE_YOUR_CALM long before 20,000 streams", async () => {
      const s = await underAttack(strata, () => rapidReset(strata));
      const e = await underAttack(etcd, () => rapidReset(etcd));
      report(transport, "rapid reset", { strata: s, etcd: e });
      expect(s.attacker.goAway?.code).toBe(ErrorCode.ENHANCE_YOUR_CALM);
      expect(s.attacker.goAway?.reason).toContain("streams reset before their handler finished");
      expect(s.attacker.closed).toBe(true);
      // the reset budget: a burst of 1,000, then 200 a second
      expect(s.attacker.taken).toBeLessThan(5000);
      expectUnharmed(s);
    }, 60_000);

    test("a header list over the limit refuses its stream only, as etcd does", async () => {
      const s = await underAttack(strata, () => headerListTooLarge(strata));
      const e = await underAttack(etcd, () => headerListTooLarge(etcd));
      report(transport, "header list too large", { strata: s, etcd: e });
      // grpc-go's answer (etcd's over h2c): RST_STREAM FRAME_SIZE_ERROR; the next stream is served
      expect(s.attacker).toEqual({ tooLarge: ErrorCode.FRAME_SIZE_ERROR, next: "0", closed: false, goAway: undefined });
      if (transport === "h2c") expect(s.attacker).toEqual(e.attacker);
      // etcd over TLS (Go's net/http2) refuses it with another code, the connection serving on
      else expect([e.attacker.tooLarge !== undefined, e.attacker.next, e.attacker.closed]).toEqual([true, "0", false]);
      expectUnharmed(s);
    }, 60_000);

    test("a gRPC length prefix over max-request-bytes is refused at once with etcd's ResourceExhausted", async () => {
      const s = await underAttack(strata, () => oversizedMessage(strata));
      const e = await underAttack(etcd, () => oversizedMessage(etcd));
      report(transport, "oversized message", { strata: s, etcd: e });
      expect(s.attacker).toEqual({ status: "8", message: "grpc: received message larger than max (4294967295 vs. 2097152)", closed: false, goAway: undefined });
      expect(s.attacker).toEqual(e.attacker);
      expectUnharmed(s);
    }, 60_000);

    test("malformed request headers (RFC 9113 §8.2–8.3) are stream errors PROTOCOL_ERROR", async () => {
      const s = await underAttack(strata, () => malformedHeaders(strata));
      const e = await underAttack(etcd, () => malformedHeaders(etcd));
      report(transport, "malformed headers", { strata: s, etcd: e });
      expect(s.attacker).toEqual(Object.fromEntries(Object.keys(MALFORMED).map((name) => [name, ErrorCode.PROTOCOL_ERROR])));
      // etcd's gRPC transport refuses some of them (uppercase, duplicate or misplaced pseudo-headers): printed
      expectUnharmed(s);
    }, 60_000);

    for (const kind of Object.keys(FLOODS)) {
      test(`a ${kind} flood: ENHANCE_YOUR_CALM naming it`, async () => {
        const s = await underAttack(strata, () => controlFlood(strata, kind));
        const e = await underAttack(etcd, () => controlFlood(etcd, kind));
        report(transport, `${kind} flood`, { strata: s, etcd: e });
        expect(s.attacker.goAway?.code).toBe(ErrorCode.ENHANCE_YOUR_CALM);
        expect(s.attacker.goAway?.reason).toStartWith(`too many ${kind} frames`);
        expect(s.attacker.closed).toBe(true);
        // etcd (grpc-go) ends a PING flood too ("too_many_pings"), often before its GOAWAY is read: printed
        expectUnharmed(s);
      }, 60_000);
    }

    let loaded = false;
    /** 200 keys of 100 KB under big/ (once per strata) */
    async function loadRange(): Promise<void> {
      if (loaded) return;
      loaded = true;
      const loader = strata.client();
      const value = Buffer.alloc(100_000, 0x61);
      for (let i = 0; i < 200; i += 20) {
        await Promise.all(Array.from({ length: 20 }, (_, j) => loader.put(`big/${String(i + j).padStart(3, "0")}`).value(value).exec()));
      }
      loader.close();
    }

    test("2,000 Range calls of one 1.4 MB value from a client that never gives window: memory bounded too", async () => {
      const loader = strata.client();
      await loader.put("big-value").value(Buffer.alloc(1_400_000, 0x62)).exec();
      loader.close();
      const one = grpcMessage(toBinary(RangeRequestSchema, create(RangeRequestSchema, { key: Buffer.from("big-value") })));
      const s = await underAttack(strata, async () => {
        const c = await strata.connect([[Setting.INITIAL_WINDOW_SIZE, 0]]);
        const ids: number[] = [];
        for (let batch = 0; batch < 20; batch++) {
          const frames: Buffer[] = [];
          for (let i = 0; i < 100; i++) {
            const id = c.nextId();
            ids.push(id);
            frames.push(frame(FrameType.HEADERS, Flag.END_HEADERS, id, c.encode(grpcRequest("/etcdserverpb.KV/Range"))), frame(FrameType.DATA, Flag.END_STREAM, id, one));
          }
          await flood(c, Buffer.concat(frames), 1);
        }
        const outcome = await streamOutcomes(c, ids);
        c.close();
        return { outcome, ...ending(c) };
      });
      report(transport, "2,000 stalled reads of one large value", { strata: s });
      const stalled = `RST_STREAM ${ErrorCode.ENHANCE_YOUR_CALM}`;
      expect(s.attacker.outcome[stalled]).toBeGreaterThan(0);
      expect((s.attacker.outcome[stalled] ?? 0) + (s.attacker.outcome["grpc-status 8"] ?? 0)).toBe(2000);
      expectUnharmed(s);
    }, 90_000);

    /** 20 keys of 100 KB under txn/ on `t` (2 MB a range), once per target */
    const txnLoaded = new Set<string>();
    async function loadTxnRange(t: Target): Promise<void> {
      if (txnLoaded.has(t.name)) return;
      txnLoaded.add(t.name);
      const loader = t.client();
      await Promise.all(Array.from({ length: 20 }, (_, i) => loader.put(`txn/${String(i).padStart(2, "0")}`).value(Buffer.alloc(100_000, 0x63)).exec()));
      loader.close();
    }
    /** a Txn whose success branch reads txn/ 16 times: a 32 MB answer from a 400-byte request */
    const LARGE_TXN = grpcMessage(toBinary(TxnRequestSchema, create(TxnRequestSchema, {
      success: Array.from({ length: 16 }, () => ({ request: { case: "requestRange" as const, value: { key: Buffer.from("txn/"), rangeEnd: Buffer.from("txn0") } } })),
    })));

    /**
     * 24 such Txns (770 MB of answers) on a connection that never gives window. Waits until
     * every stream ended (strata resets or refuses them) or was answered and is held (etcd
     * sends the headers and keeps the rest, with no end), then closes the connection.
     */
    async function largeTxns(t: Target) {
      const c = await t.connect([[Setting.INITIAL_WINDOW_SIZE, 0]]);
      const ids = Array.from({ length: 24 }, () => {
        const id = c.nextId();
        c.write(frame(FrameType.HEADERS, Flag.END_HEADERS, id, c.encode(grpcRequest("/etcdserverpb.KV/Txn"))));
        c.write(frame(FrameType.DATA, Flag.END_STREAM, id, LARGE_TXN));
        return id;
      });
      const settled = (id: number) => c.resetCode(id) !== undefined || c.headerBlocks(id).length > 0;
      const ended = (id: number) => c.resetCode(id) !== undefined || c.grpcStatus(id) !== undefined;
      await c.until(() => c.closed || ids.every(t.name === "strata" ? ended : settled), 60_000, "every Txn to be answered or end");
      const outcome: Record<string, number> = {};
      for (const id of ids) {
        const key = c.resetCode(id) !== undefined ? `RST_STREAM ${c.resetCode(id)}` : c.grpcStatus(id) ? `grpc-status ${c.grpcStatus(id)!.status}` : "answer held";
        outcome[key] = (outcome[key] ?? 0) + 1;
      }
      c.close();
      return { outcome, ...ending(c) };
    }

    test("24 Txns of 16 Range ops over 2 MB from a client that never gives window: memory bounded by the response budget", async () => {
      await Promise.all([loadTxnRange(strata), loadTxnRange(etcd)]);
      const s = await underAttack(strata, () => largeTxns(strata));
      const e = await underAttack(etcd, () => largeTxns(etcd));
      report(transport, "24 stalled Txns of 16 ranges", { strata: s, etcd: e });
      const stalled = `RST_STREAM ${ErrorCode.ENHANCE_YOUR_CALM}`;
      expect(s.attacker.outcome[stalled]).toBeGreaterThan(0);
      expect((s.attacker.outcome[stalled] ?? 0) + (s.attacker.outcome["grpc-status 8"] ?? 0)).toBe(24);
      expectUnharmed(s);
      // and the budget is free again: a Txn reading the range from a reader that reads is answered
      const reader = strata.client();
      const answer = await withDeadline(reader.if("txn/00", "Version", ">", 0).then(reader.getAll().prefix("txn/")).commit(), 30_000, "a Txn over the range");
      reader.close();
      expect(answer.responses[0]?.response_range?.kvs.length).toBe(20);
    }, 120_000);

    const bigRange = { key: Buffer.from("big/"), rangeEnd: Buffer.from("big0") };
    const CALLS: Record<string, { path: string; headers: HeaderList; body: Buffer }> = {
      Range: { path: "Range", headers: [], body: grpcMessage(toBinary(RangeRequestSchema, create(RangeRequestSchema, bigRange))) },
      RangeStream: { path: "RangeStream", headers: [], body: grpcMessage(toBinary(RangeRequestSchema, create(RangeRequestSchema, bigRange))) },
      // gRPC's JSON codec: answered through Connect, not strata's own path
      "Range (JSON)": {
        path: "Range",
        headers: [["content-type", "application/grpc+json"]],
        body: grpcMessage(Buffer.from(JSON.stringify({ key: bigRange.key.toString("base64"), rangeEnd: bigRange.rangeEnd.toString("base64") }))),
      },
    };
    for (const [method, call] of Object.entries(CALLS)) {
      test(`200 ${method} calls over a 20 MB range from a client that never gives window: memory bounded by the response budget`, async () => {
        await loadRange();
        const headers: HeaderList = [...grpcRequest(`/etcdserverpb.KV/${call.path}`).filter(([n]) => !call.headers.some(([h]) => h === n)), ...call.headers];
        const s = await underAttack(strata, async () => {
          // no stream window, and no connection window beyond the first 65,535 bytes
          const c = await strata.connect([[Setting.INITIAL_WINDOW_SIZE, 0]]);
          const ids = Array.from({ length: 200 }, () => {
            const id = c.nextId();
            c.write(frame(FrameType.HEADERS, Flag.END_HEADERS, id, c.encode(headers)));
            c.write(frame(FrameType.DATA, Flag.END_STREAM, id, call.body));
            return id;
          });
          // each stream ends within a stall timeout or two (reset, or refused after waiting for room)
          const outcome = await streamOutcomes(c, ids);
          c.close();
          return { outcome, ...ending(c) };
        });
        report(transport, `200 stalled ${method} calls`, { strata: s });
        // stalled responses reset (ENHANCE_YOUR_CALM), reads that found no room refused (ResourceExhausted)
        const stalled = `RST_STREAM ${ErrorCode.ENHANCE_YOUR_CALM}`;
        expect(s.attacker.outcome[stalled]).toBeGreaterThan(0);
        expect((s.attacker.outcome[stalled] ?? 0) + (s.attacker.outcome["grpc-status 8"] ?? 0)).toBe(200);
        expect(s.attacker.closed).toBe(false);
        expectUnharmed(s);
        // and the budget is free again: a reader that reads gets the whole range
        const reader = strata.client();
        const all = await withDeadline(reader.getAll().prefix("big/").keys(), 30_000, "the whole range");
        reader.close();
        expect(all.length).toBe(200);
      }, 90_000);
    }
  });
}
