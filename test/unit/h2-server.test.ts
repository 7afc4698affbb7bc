// strata's HTTP/2 server at the level of frames: flow control as RFC 9113 states it
// (the defect in Bun's node:http2 that stalled etcd's Go client is the first test),
// fairness between streams, and the connection's housekeeping.
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as net from "node:net";
import { frame, Setting } from "../../src/api/h2/frames.ts";
import { H2Server } from "../../src/api/h2/server.ts";
import type { H2Stream } from "../../src/api/h2/stream.ts";
import { DEFAULT_WINDOW, ErrorCode, Flag, FrameType, H2TestClient } from "../support/h2-client.ts";

const MiB = 1024 * 1024;
let server: H2Server;
let port: number;

/**
 * /bytes/N answers N bytes (in 64 KiB writes, waiting for room as a response writer does);
 * /echo answers its body; /pieces/N answers N writes of 100 bytes at once; /hold never
 * reads its body nor answers
 */
async function handle(stream: H2Stream): Promise<void> {
  const [, kind, arg] = stream.path.split("/");
  if (kind === "bytes") {
    stream.respond([[":status", "200"]]);
    let left = Number(arg);
    while (left > 0 && !stream.closed) {
      const n = Math.min(left, 64 * 1024);
      stream.write(new Uint8Array(n).fill(0x61));
      left -= n;
      await stream.room();
    }
    stream.end([["done", "yes"]]);
  } else if (kind === "echo") {
    const chunks: Uint8Array[] = [];
    for await (const c of stream.body()) chunks.push(c);
    stream.respond([[":status", "200"]]);
    stream.write(Buffer.concat(chunks));
    stream.end();
  } else if (kind === "pieces") {
    // N messages of 100 bytes written in one turn, as a watch stream writes one per watcher
    stream.respond([[":status", "200"]]);
    for (let i = 0; i < Number(arg); i++) stream.write(new Uint8Array(100).fill(i % 256));
    stream.end();
  } else if (kind === "hold") {
    // never reads its body
  } else {
    stream.respond([[":status", "404"]]);
    stream.end();
  }
}

beforeAll(async () => {
  server = new H2Server((s) => void handle(s));
  await server.listen(0, "127.0.0.1");
  port = server.address.port;
});

afterAll(() => server.destroy());

test("a raised SETTINGS_INITIAL_WINDOW_SIZE applies to streams already open, credit already granted included", async () => {
  const c = await H2TestClient.connect(port);
  c.windowUpdate(0, 64 * MiB);
  const id = c.request("/bytes/4194304");
  await c.until(() => c.received.get(id) === DEFAULT_WINDOW, 5000, "the first window");
  // credit granted by WINDOW_UPDATE first, as a client reading along does
  c.windowUpdate(id, 100_000);
  await c.until(() => c.received.get(id) === DEFAULT_WINDOW + 100_000, 5000, "the credited bytes");
  // then the window raised by SETTINGS alone (grpc-go's BDP estimation): the stream may
  // now have 1 MiB outstanding, of which nothing is outstanding yet
  c.settings([[Setting.INITIAL_WINDOW_SIZE, MiB]]);
  await c.until(() => c.received.get(id) === DEFAULT_WINDOW + 100_000 + (MiB - DEFAULT_WINDOW), 5000, "the raised window");
  await c.quietFor(100);
  expect(c.received.get(id)).toBe(MiB + 100_000);
  c.close();
});

test("a lowered window holds the stream back until WINDOW_UPDATE lifts it again", async () => {
  const c = await H2TestClient.connect(port, [[Setting.INITIAL_WINDOW_SIZE, 32_768]]);
  c.windowUpdate(0, 64 * MiB);
  const id = c.request("/bytes/200000");
  await c.until(() => c.received.get(id) === 32_768);
  c.settings([[Setting.INITIAL_WINDOW_SIZE, 16_384]]);
  await c.quietFor(100);
  expect(c.received.get(id)).toBe(32_768);
  // the window is now -16,384: 20,000 more lets 3,616 bytes go
  c.windowUpdate(id, 20_000);
  await c.until(() => c.received.get(id) === 32_768 + 3_616);
  await c.quietFor(100);
  expect(c.received.get(id)).toBe(32_768 + 3_616);
  c.close();
});

test("a stream whose reader stopped does not hold back the other streams", async () => {
  const c = await H2TestClient.connect(port);
  c.windowUpdate(0, 256 * MiB);
  const stalled = c.request("/bytes/8388608");
  await c.until(() => c.received.get(stalled) === DEFAULT_WINDOW);
  const others = Array.from({ length: 20 }, () => c.request("/bytes/300000"));
  for (const id of others) c.windowUpdate(id, 300_000);
  await c.until(() => others.every((id) => c.received.get(id) === 300_000), 10_000, "every other stream's body");
  const ends = c.frames.filter((f) => f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) && others.includes(f.streamId));
  expect(ends.length).toBe(others.length);
  expect(c.received.get(stalled)).toBe(DEFAULT_WINDOW);
  c.close();
});

test("streams take turns frame by frame: a small answer is not queued behind a large one", async () => {
  const c = await H2TestClient.connect(port, [[Setting.INITIAL_WINDOW_SIZE, 64 * MiB]]);
  c.windowUpdate(0, 256 * MiB);
  const big = c.request("/bytes/33554432");
  await c.until(() => (c.received.get(big) ?? 0) > 0);
  const small = c.request("/echo", new Uint8Array(100).fill(1));
  await c.until(() => c.frames.some((f) => f.streamId === small && (f.flags & Flag.END_STREAM) !== 0), 5000, "the small answer");
  expect(c.received.get(big)!).toBeLessThan(32 * MiB);
  c.close();
});

test("many small writes queued at once go out in few DATA frames, bytes in order", async () => {
  const c = await H2TestClient.connect(port, [[Setting.INITIAL_WINDOW_SIZE, MiB]]);
  c.windowUpdate(0, MiB);
  const id = c.request("/pieces/1000");
  await c.until(() => c.frames.some((f) => f.streamId === id && (f.flags & Flag.END_STREAM) !== 0), 5000, "the answer");
  const data = c.frames.filter((f) => f.streamId === id && f.type === FrameType.DATA);
  const body = Buffer.concat(data.map((f) => f.payload));
  expect(body.length).toBe(100_000);
  for (let i = 0; i < 1000; i++) expect(body[i * 100]).toBe(i % 256);
  // 100,000 bytes fill 7 frames of 16 KiB (the default largest); a frame per write would be 1,000
  expect(data.length).toBeLessThan(10);
  c.close();
});

test("request bodies: the server's stream window is given back as the body is read", async () => {
  const c = await H2TestClient.connect(port, [[Setting.INITIAL_WINDOW_SIZE, 64 * MiB]]);
  c.windowUpdate(0, 64 * MiB);
  const body = Buffer.alloc(3 * MiB, 7);
  const id = c.open("/echo");
  let sent = 0;
  // send only what the server's windows allow: 1 MiB announced per stream, then its WINDOW_UPDATEs
  const sendAllowed = () => {
    const allowed = Math.min(body.length, MiB + c.credit(id));
    while (sent < allowed) {
      const n = Math.min(16_384, allowed - sent);
      c.data(id, body.subarray(sent, sent + n), sent + n === body.length);
      sent += n;
    }
    return sent === body.length;
  };
  sendAllowed();
  await c.until(sendAllowed, 10_000, "credit for the whole body");
  await c.until(() => c.received.get(id) === body.length, 10_000, "the echo");
  c.close();
});

test("request bytes nobody reads are bounded by the connection window, and given back when their stream ends", async () => {
  const c = await H2TestClient.connect(port);
  const CONNECTION_WINDOW = 16 * MiB;
  await c.until(() => c.credit(0) > 0, 5000, "the server's connection window");
  const held = Array.from({ length: 20 }, () => c.open("/hold"));
  const piece = new Uint8Array(16_384);
  let sent = 0;
  // as much as the windows allow: 1 MiB per stream, 16 MiB for the connection
  const fill = (ids: number[]) => {
    for (const id of ids) {
      for (let onStream = 0; onStream + piece.length <= MiB; onStream += piece.length) {
        if (sent + piece.length > DEFAULT_WINDOW + c.credit(0)) return;
        c.data(id, piece);
        sent += piece.length;
      }
    }
  };
  fill(held);
  await c.quietFor(200);
  // the server gave back none of it: nothing was read
  expect(c.credit(0)).toBe(CONNECTION_WINDOW - 65_535);
  expect(sent).toBe(CONNECTION_WINDOW);
  expect(c.frames.some((f) => f.type === FrameType.GOAWAY)).toBe(false);
  // the client gives up on the held streams: their bytes come back to the connection
  for (const id of held) c.write(frame(FrameType.RST_STREAM, 0, id, Buffer.from([0, 0, 0, ErrorCode.CANCEL])));
  await c.until(() => c.credit(0) >= CONNECTION_WINDOW - DEFAULT_WINDOW + sent - CONNECTION_WINDOW / 4, 5000, "the held bytes given back");
  const next = c.request("/echo", new Uint8Array([9]));
  await c.until(() => c.received.get(next) === 1);
  c.close();
});

test("PING is answered with its payload; SETTINGS are acknowledged", async () => {
  const c = await H2TestClient.connect(port);
  c.write(frame(FrameType.PING, 0, 0, Buffer.from("12345678")));
  await c.until(() => c.frames.some((f) => f.type === FrameType.PING));
  const ping = c.frames.find((f) => f.type === FrameType.PING)!;
  expect(ping.flags & Flag.ACK).toBe(Flag.ACK);
  expect(ping.payload.toString()).toBe("12345678");
  await c.until(() => c.frames.some((f) => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) !== 0));
  c.close();
});

test("a protocol error ends the connection with GOAWAY naming it", async () => {
  const c = await H2TestClient.connect(port);
  // a stream id must be odd for a client
  c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 2, new Uint8Array([0x83])));
  await c.until(() => c.closed);
  const goAway = c.frames.find((f) => f.type === FrameType.GOAWAY)!;
  expect(goAway.payload.readUInt32BE(4)).toBe(ErrorCode.PROTOCOL_ERROR);
  expect(goAway.payload.subarray(8).toString()).toContain("stream 2");
});

test("DATA beyond the window a stream was given resets that stream only", async () => {
  const c = await H2TestClient.connect(port);
  const id = c.open("/hold");
  const piece = new Uint8Array(16_384);
  for (let sent = 0; sent <= MiB; sent += piece.length) c.data(id, piece);
  await c.until(() => c.frames.some((f) => f.type === FrameType.RST_STREAM && f.streamId === id));
  const rst = c.frames.find((f) => f.type === FrameType.RST_STREAM)!;
  expect(rst.payload.readUInt32BE(0)).toBe(ErrorCode.FLOW_CONTROL_ERROR);
  const next = c.request("/echo", new Uint8Array([1, 2, 3]));
  await c.until(() => c.received.get(next) === 3);
  c.close();
});

test("an HTTP/1 request gets a plain answer saying what is served here", async () => {
  const socket = net.connect(port, "127.0.0.1");
  let text = "";
  socket.on("data", (d) => (text += d.toString()));
  socket.write("GET /health HTTP/1.1\r\nhost: x\r\n\r\n");
  await new Promise((r) => socket.once("close", r));
  expect(text).toStartWith("HTTP/1.1 505");
  expect(text).toContain("etcd v3 gRPC API over HTTP/2");
});

test("the server's close sends GOAWAY, refuses new streams and waits for those under way", async () => {
  const own = new H2Server((s) => void handle(s));
  await own.listen(0, "127.0.0.1");
  const c = await H2TestClient.connect(own.address.port);
  c.windowUpdate(0, 64 * MiB);
  const id = c.request("/bytes/2000000");
  await c.until(() => c.received.get(id) === DEFAULT_WINDOW);
  let done = false;
  const closed = own.close().then(() => (done = true));
  await c.until(() => c.frames.some((f) => f.type === FrameType.GOAWAY));
  const goAway = c.frames.find((f) => f.type === FrameType.GOAWAY)!;
  expect(goAway.payload.readUInt32BE(0)).toBe(id);
  expect(goAway.payload.readUInt32BE(4)).toBe(ErrorCode.NO_ERROR);
  const late = c.request("/echo", new Uint8Array([1]));
  await c.until(() => c.frames.some((f) => f.type === FrameType.RST_STREAM && f.streamId === late));
  expect(c.frames.find((f) => f.type === FrameType.RST_STREAM && f.streamId === late)!.payload.readUInt32BE(0)).toBe(ErrorCode.REFUSED_STREAM);
  await c.quietFor(100);
  expect(done).toBe(false);
  c.windowUpdate(id, 2_000_000);
  await closed;
  await c.until(() => c.closed, 5000, "the server to end the connection");
  expect(c.received.get(id)).toBe(2_000_000);
});
