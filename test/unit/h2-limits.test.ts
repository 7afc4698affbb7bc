// What one HTTP/2 client may make strata's server hold or compute (docs/http2-limits.md):
// header blocks bounded in frames, streams reset while their handler runs still counting
// against the stream limit, floods of frames that ask for nothing cut off with a reason
// that names them, responses that do not move reset, idle connections closed.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { frame, Setting } from "../../src/api/h2/frames.ts";
import type { HeaderList } from "../../src/api/h2/hpack.ts";
import { H2Server } from "../../src/api/h2/server.ts";
import type { H2Stream } from "../../src/api/h2/stream.ts";
import { ErrorCode, Flag, FrameType, H2TestClient } from "../support/h2-client.ts";

const REQUEST: HeaderList = [[":method", "POST"], [":scheme", "http"], [":path", "/"], [":authority", "test"]];
const at = (path: string): HeaderList => REQUEST.map(([n, v]) => [n, n === ":path" ? path : v]);

/** handlers still running, by stream id; each ends when its stream's `release` is called */
const running = new Map<number, () => void>();
/**
 * /work runs until released (it ignores that its stream closed, as a read under way
 * does); /watch answers its headers, then runs until its stream closes, as a watch does;
 * /bytes/N answers N bytes; anything else is answered 200
 */
function handle(stream: H2Stream): Promise<void> | void {
  const [, kind, arg] = stream.path.split("/");
  if (kind === "work") return new Promise<void>((resolve) => running.set(stream.id, resolve));
  if (kind === "watch") {
    stream.respond([[":status", "200"]]);
    return new Promise<void>((resolve) => stream.onClose(() => setTimeout(resolve, 1)));
  }
  stream.respond([[":status", "200"]]);
  if (kind === "bytes") stream.write(new Uint8Array(Number(arg)));
  stream.end();
}

const servers: H2Server[] = [];
async function serve(options: ConstructorParameters<typeof H2Server>[2] = {}): Promise<number> {
  const s = new H2Server(handle, undefined, options);
  await s.listen(0, "127.0.0.1");
  servers.push(s);
  return s.address.port;
}
let port: number;
beforeAll(async () => {
  port = await serve();
});
afterAll(() => {
  for (const s of servers) s.destroy();
});

const answered = (c: H2TestClient, id: number) => c.headerBlocks(id).some((h) => h.some(([n, v]) => n === ":status" && v === "200"));

test("a header block is bounded in frames: empty CONTINUATION frames end the connection after 128", async () => {
  const c = await H2TestClient.connect(port);
  c.write(frame(FrameType.HEADERS, 0, 1, c.encode(REQUEST)));
  const empty = frame(FrameType.CONTINUATION, 0, 1, new Uint8Array(0));
  // far more than the limit, in one write: the server must stop reading them, not hold them
  c.write(Buffer.concat(Array(10_000).fill(empty)));
  await c.until(() => c.closed, 5000, "the connection to close");
  expect(c.goAway()?.code).toBe(ErrorCode.ENHANCE_YOUR_CALM);
  expect(c.goAway()?.reason).toBe("header block in more than 128 frames");
});

test("a header block in 64 full CONTINUATION frames (1 MiB) is served", async () => {
  const c = await H2TestClient.connect(port);
  const block = Buffer.from(c.encode([...REQUEST, ["x-big", "v".repeat(64 * 16_384 - 1000)]]));
  let offset = 0;
  for (let first = true; offset < block.length; first = false) {
    const piece = block.subarray(offset, offset + 16_384);
    offset += piece.length;
    const flags = (offset >= block.length ? Flag.END_HEADERS : 0) | (first ? Flag.END_STREAM : 0);
    c.write(frame(first ? FrameType.HEADERS : FrameType.CONTINUATION, flags, 1, piece));
  }
  await c.until(() => answered(c, 1), 5000, "the answer");
  c.close();
});

test("a header list over the limit refuses its stream only; the compression state stays in step", async () => {
  const c = await H2TestClient.connect(port);
  // a 4,000-byte field added to the dynamic table, then named 300 times: 1.2 MB decoded from 4 KB
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, c.encode(at("/work"))));
  const big = Buffer.concat([Buffer.from([0x40, 5]), Buffer.from("x-big"), Buffer.from([0x7f, (4000 - 127) & 0x7f | 0x80, (4000 - 127) >> 7]), Buffer.alloc(4000, 0x76)]);
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, Buffer.concat([c.encode(REQUEST), big, Buffer.alloc(300, 0x80 | 62)])));
  // the next block names the dynamic table's newest entry again: wrong if the table missed an entry
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 5, Buffer.concat([c.encode(REQUEST), Buffer.from([0x80 | 62])])));
  await c.until(() => answered(c, 5), 5000, "the next stream's answer");
  expect(c.resetCode(3)).toBe(ErrorCode.FRAME_SIZE_ERROR);
  expect(c.goAway()).toBeUndefined();
  running.get(1)?.();
  c.close();
});

test("streams reset while their handler runs count against MAX_CONCURRENT_STREAMS until it returns", async () => {
  const own = await serve({ maxConcurrentStreams: 10 });
  const c = await H2TestClient.connect(own);
  const ids: number[] = [];
  for (let i = 0; i < 10; i++) {
    const id = c.nextId();
    ids.push(id);
    c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, c.encode(at("/work"))));
    c.write(frame(FrameType.RST_STREAM, 0, id, Buffer.from([0, 0, 0, ErrorCode.CANCEL])));
  }
  await c.until(() => ids.every((id) => running.has(id)), 5000, "every handler to start");
  const refused = c.nextId();
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, refused, c.encode(REQUEST)));
  await c.until(() => c.resetCode(refused) !== undefined, 5000, "the refusal");
  expect(c.resetCode(refused)).toBe(ErrorCode.REFUSED_STREAM);
  // one handler returns: one stream may open again
  running.get(ids[0]!)!();
  await new Promise((r) => setTimeout(r, 10));
  const admitted = c.nextId();
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, admitted, c.encode(REQUEST)));
  await c.until(() => answered(c, admitted), 5000, "the answer");
  for (const id of ids) running.get(id)?.();
  c.close();
});

test("a connection that keeps resetting streams it opened gets GOAWAY ENHANCE_YOUR_CALM (rapid reset)", async () => {
  const c = await H2TestClient.connect(port);
  const frames: Buffer[] = [];
  for (let i = 0; i < 5000; i++) {
    const id = c.nextId();
    frames.push(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, c.encode(at("/work"))), frame(FrameType.RST_STREAM, 0, id, Buffer.from([0, 0, 0, 8])));
  }
  c.write(Buffer.concat(frames));
  await c.until(() => c.closed, 10_000, "the connection to close");
  expect(c.goAway()?.code).toBe(ErrorCode.ENHANCE_YOUR_CALM);
  expect(c.goAway()?.reason).toContain("streams reset before their handler finished");
  // it stopped well before the 5,000th stream
  expect(c.goAway()!.lastStreamId).toBeLessThan(2 * 1500);
  for (const release of running.values()) release();
  running.clear();
});

test("a client cancelling 2,000 answered streams at once (closing its watches) is not taken for a rapid reset", async () => {
  const c = await H2TestClient.connect(port);
  const ids: number[] = [];
  for (let i = 0; i < 2000; i++) {
    ids.push(c.nextId());
    c.write(frame(FrameType.HEADERS, Flag.END_HEADERS, ids.at(-1)!, c.encode(at("/watch"))));
  }
  await c.until(() => ids.every((id) => answered(c, id)), 20_000, "every watch's headers");
  c.write(Buffer.concat(ids.map((id) => frame(FrameType.RST_STREAM, 0, id, Buffer.from([0, 0, 0, ErrorCode.CANCEL])))));
  const next = c.nextId();
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, next, c.encode(REQUEST)));
  await c.until(() => answered(c, next) || c.closed, 10_000, "the next stream's answer");
  expect(c.goAway()).toBeUndefined();
  expect(answered(c, next)).toBe(true);
  c.close();
});

for (const [kind, make] of [
  ["PING", () => frame(FrameType.PING, 0, 0, Buffer.alloc(8))],
  ["SETTINGS", () => frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(0))],
  ["WINDOW_UPDATE", () => frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from([0, 0, 0, 1]))],
  ["PRIORITY", () => frame(FrameType.PRIORITY, 0, 3, Buffer.from([0, 0, 0, 0, 16]))],
  ["unknown-type", () => frame(0x20, 0, 0, Buffer.alloc(0))],
  ["empty DATA", () => frame(FrameType.DATA, 0, 1, Buffer.alloc(0))],
] as const) {
  test(`a ${kind} flood from a client that reads gets GOAWAY ENHANCE_YOUR_CALM naming it`, async () => {
    const c = await H2TestClient.connect(port);
    // empty DATA needs an open stream
    c.write(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, c.encode(at("/work"))));
    const one = make();
    for (let i = 0; i < 20 && !c.closed; i++) {
      c.write(Buffer.concat(Array(1000).fill(one)));
      await c.drained();
    }
    await c.until(() => c.closed, 5000, "the connection to close");
    expect(c.goAway()?.code).toBe(ErrorCode.ENHANCE_YOUR_CALM);
    expect(c.goAway()?.reason).toStartWith(`too many ${kind} frames`);
    running.get(1)?.();
  });
}

test("PING frames interleaved with the responses they follow (grpc-go's BDP pings) are not a flood", async () => {
  const c = await H2TestClient.connect(port, [[Setting.INITIAL_WINDOW_SIZE, 1 << 30]]);
  c.windowUpdate(0, 1 << 30);
  // 3,000 pings, each after a request whose answer is a DATA frame
  for (let i = 0; i < 3000; i++) {
    const id = c.nextId();
    c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, c.encode(at("/bytes/10"))));
    if (i % 100 === 99) await c.until(() => answered(c, id), 5000, "the answers so far");
    c.write(frame(FrameType.PING, 0, 0, Buffer.alloc(8)));
  }
  await c.until(() => c.frames.filter((f) => f.type === FrameType.PING).length === 3000, 10_000, "every PING answered");
  expect(c.goAway()).toBeUndefined();
  c.close();
});

test("a stream whose response does not move for the stall timeout is reset; one that reads is not", async () => {
  const own = await serve({ stalledStreamTimeoutMs: 1000 });
  const c = await H2TestClient.connect(own, [[Setting.INITIAL_WINDOW_SIZE, 0]]);
  c.windowUpdate(0, 1 << 20);
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, c.encode(at("/bytes/100000"))));
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, c.encode(at("/bytes/100000"))));
  await c.until(() => answered(c, 1) && answered(c, 3), 5000, "both answers' headers");
  // stream 3 is given window in pieces, each before the timeout; stream 1 none
  for (let given = 0; given < 100_000; given += 20_000) {
    c.windowUpdate(3, 20_000);
    await c.until(() => (c.received.get(3) ?? 0) >= given + 20_000, 5000, "the piece credited");
    await c.quietFor(100);
  }
  await c.until(() => c.resetCode(1) !== undefined, 5000, "the stalled stream's reset");
  expect(c.resetCode(1)).toBe(ErrorCode.ENHANCE_YOUR_CALM);
  expect(c.resetCode(3)).toBeUndefined();
  expect(c.received.get(3)).toBe(100_000);
  c.close();
});

test("a connection with no stream open for the idle timeout gets GOAWAY NO_ERROR and closes; one with a stream stays", async () => {
  const own = await serve({ idleTimeoutMs: 300 });
  const idle = await H2TestClient.connect(own);
  const busy = await H2TestClient.connect(own);
  busy.write(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, busy.encode(at("/work"))));
  await idle.until(() => idle.closed, 5000, "the idle connection to close");
  expect(idle.goAway()?.code).toBe(ErrorCode.NO_ERROR);
  expect(idle.goAway()?.reason).toContain("no stream open");
  await busy.quietFor(600);
  expect(busy.closed).toBe(false);
  running.get(1)?.();
  busy.close();
});

test("past --max-connections a new connection gets GOAWAY saying why; the open ones keep working, and a freed place is taken", async () => {
  const limited = await serve({ maxConnections: 3 });
  const server = servers.at(-1)!;
  const open = await Promise.all(Array.from({ length: 3 }, () => H2TestClient.connect(limited)));
  const over = await H2TestClient.connect(limited);
  await over.until(() => over.closed, 5000, "the refused connection to close");
  expect(over.goAway()).toEqual({ lastStreamId: 0, code: ErrorCode.NO_ERROR, reason: "too many connections: 3 open (--max-connections)" });
  expect(server.refusedConnections).toBe(1);
  for (const c of open) {
    const id = c.request("/");
    await c.until(() => answered(c, id), 5000, "an answer on a connection opened before");
    expect(c.closed).toBe(false);
  }
  open[0]!.close();
  await over.until(() => server.openConnections === 2, 5000, "the closed connection to leave");
  const next = await H2TestClient.connect(limited);
  const id = next.request("/");
  await next.until(() => answered(next, id), 5000, "an answer on the connection that took the freed place");
  expect(next.goAway()).toBeUndefined();
  for (const c of [...open, next]) c.close();
});

test("the bytes held for connections (on /metrics) count a response the client gives no window for, until its stream ends", async () => {
  const p = await serve();
  const server = servers.at(-1)!;
  const c = await H2TestClient.connect(p, [[Setting.INITIAL_WINDOW_SIZE, 0]]);
  const id = c.request("/bytes/100000");
  await c.until(() => c.headerBlocks(id).length > 0, 5000, "the response's headers");
  expect(server.heldBytes).toBeGreaterThanOrEqual(100_000);
  c.close();
  await c.until(() => server.openConnections === 0, 5000, "the connection to leave");
  expect(server.heldBytes).toBe(0);
});
