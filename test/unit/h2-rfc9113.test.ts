// strata's HTTP/2 server against RFC 9113's error rules, case by case in the manner of
// h2spec (its section numbers): each case sends frames on a fresh connection and expects
// the connection error (GOAWAY with that code, then close), the stream error (RST_STREAM
// with that code on that stream, the connection still serving) or the answer the RFC asks for.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { frame, Setting } from "../../src/api/h2/frames.ts";
import type { HeaderList } from "../../src/api/h2/hpack.ts";
import { H2Server } from "../../src/api/h2/server.ts";
import type { H2Stream } from "../../src/api/h2/stream.ts";
import { ErrorCode, Flag, FrameType, H2TestClient } from "../support/h2-client.ts";

let server: H2Server;
let port: number;

/** /hold keeps the stream open without answering; anything else is answered 200 once the request ended */
async function handle(stream: H2Stream): Promise<void> {
  if (stream.path === "/hold") return;
  for await (const _ of stream.body());
  stream.respond([[":status", "200"]]);
  stream.end();
}

beforeAll(async () => {
  server = new H2Server((s) => handle(s));
  await server.listen(0, "127.0.0.1");
  port = server.address.port;
});
afterAll(() => server.destroy());

const REQUEST: HeaderList = [[":method", "POST"], [":scheme", "http"], [":path", "/"], [":authority", "test"]];
const HOLD: HeaderList = [[":method", "POST"], [":scheme", "http"], [":path", "/hold"], [":authority", "test"]];

type Expect = { connection: number } | { stream: number; on: number } | "answered";

interface Case {
  section: string;
  sends: string;
  frames: (c: H2TestClient) => unknown;
  expect: Expect;
}

const headers = (c: H2TestClient, id: number, list: HeaderList, flags = Flag.END_HEADERS | Flag.END_STREAM) =>
  c.write(frame(FrameType.HEADERS, flags, id, c.encode(list)));
const raw = (c: H2TestClient, type: number, flags: number, id: number, payload: number[] | Buffer) =>
  c.write(frame(type, flags, id, Buffer.from(payload)));
/** a request on stream 1 that the server answers in full (both sides ended), awaited */
const finished = async (c: H2TestClient) => {
  headers(c, 1, REQUEST);
  await c.until(() => c.frames.some((f) => f.streamId === 1 && (f.flags & Flag.END_STREAM) !== 0), 5000, "the answer on stream 1");
};
/** a request whose headers carry `extra` (after the pseudo-headers unless `before`) */
const request = (extra: HeaderList, before: HeaderList = []) => (c: H2TestClient) => headers(c, 1, [...before, ...REQUEST, ...extra]);

const CASES: Case[] = [
  { section: "4.2", sends: "a DATA frame over SETTINGS_MAX_FRAME_SIZE", frames: (c) => raw(c, FrameType.DATA, 0, 1, Buffer.alloc(16_385)), expect: { connection: ErrorCode.FRAME_SIZE_ERROR } },
  { section: "5.1", sends: "idle: DATA", frames: (c) => raw(c, FrameType.DATA, Flag.END_STREAM, 1, [1]), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  { section: "5.1", sends: "idle: RST_STREAM", frames: (c) => raw(c, FrameType.RST_STREAM, 0, 1, [0, 0, 0, 8]), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  { section: "5.1", sends: "idle: WINDOW_UPDATE", frames: (c) => raw(c, FrameType.WINDOW_UPDATE, 0, 1, [0, 0, 0, 100]), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  { section: "5.1", sends: "idle: CONTINUATION", frames: (c) => c.write(frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, c.encode(REQUEST))), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  {
    section: "5.1", sends: "half-closed (remote): DATA",
    frames: (c) => {
      headers(c, 1, HOLD);
      raw(c, FrameType.DATA, Flag.END_STREAM, 1, [1]);
    },
    expect: { stream: ErrorCode.STREAM_CLOSED, on: 1 },
  },
  {
    section: "5.1", sends: "half-closed (remote): HEADERS",
    frames: (c) => {
      headers(c, 1, HOLD);
      headers(c, 1, HOLD);
    },
    expect: { stream: ErrorCode.STREAM_CLOSED, on: 1 },
  },
  {
    section: "5.1", sends: "closed: DATA after RST_STREAM",
    frames: (c) => {
      headers(c, 1, HOLD, Flag.END_HEADERS);
      raw(c, FrameType.RST_STREAM, 0, 1, [0, 0, 0, 8]);
      raw(c, FrameType.DATA, Flag.END_STREAM, 1, [1]);
    },
    expect: { stream: ErrorCode.STREAM_CLOSED, on: 1 },
  },
  {
    section: "5.1", sends: "closed: HEADERS after RST_STREAM",
    frames: (c) => {
      headers(c, 1, HOLD, Flag.END_HEADERS);
      raw(c, FrameType.RST_STREAM, 0, 1, [0, 0, 0, 8]);
      headers(c, 1, HOLD);
    },
    expect: { stream: ErrorCode.STREAM_CLOSED, on: 1 },
  },
  {
    section: "5.1", sends: "closed: DATA after both ends sent END_STREAM",
    frames: async (c) => {
      await finished(c);
      raw(c, FrameType.DATA, Flag.END_STREAM, 1, [1]);
    },
    expect: { connection: ErrorCode.STREAM_CLOSED },
  },
  {
    section: "5.1", sends: "closed: HEADERS after both ends sent END_STREAM",
    frames: async (c) => {
      await finished(c);
      headers(c, 1, REQUEST);
    },
    expect: { connection: ErrorCode.STREAM_CLOSED },
  },
  { section: "5.1.1", sends: "an even stream identifier", frames: (c) => headers(c, 2, REQUEST), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  {
    section: "5.1.1", sends: "a stream identifier below one already used",
    frames: (c) => {
      headers(c, 5, REQUEST);
      headers(c, 3, REQUEST);
    },
    expect: { connection: ErrorCode.PROTOCOL_ERROR },
  },
  {
    section: "5.3.1", sends: "HEADERS depending on its own stream",
    frames: (c) => c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM | Flag.PRIORITY, 1, Buffer.concat([Buffer.from([0, 0, 0, 1, 255]), c.encode(REQUEST)]))),
    expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 },
  },
  { section: "5.3.1", sends: "PRIORITY depending on its own stream", frames: (c) => raw(c, FrameType.PRIORITY, 0, 1, [0, 0, 0, 1, 255]), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 } },
  { section: "5.5", sends: "an unknown frame type, then a request", frames: (c) => {
    raw(c, 0x20, 0, 0, [1, 2, 3]);
    headers(c, 1, REQUEST);
  }, expect: "answered" },
  { section: "6.1", sends: "DATA on stream 0", frames: (c) => raw(c, FrameType.DATA, 0, 0, [1]), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  {
    section: "6.1", sends: "DATA with padding as long as the frame",
    frames: (c) => {
      headers(c, 1, HOLD, Flag.END_HEADERS);
      raw(c, FrameType.DATA, Flag.PADDED, 1, [3, 0, 0]);
    },
    expect: { connection: ErrorCode.PROTOCOL_ERROR },
  },
  { section: "6.2", sends: "HEADERS on stream 0", frames: (c) => headers(c, 0, REQUEST), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  {
    section: "6.2", sends: "HEADERS, then a frame other than CONTINUATION",
    frames: (c) => {
      headers(c, 1, REQUEST, Flag.END_STREAM);
      raw(c, FrameType.PING, 0, 0, Buffer.alloc(8));
    },
    expect: { connection: ErrorCode.PROTOCOL_ERROR },
  },
  { section: "6.3", sends: "PRIORITY on stream 0", frames: (c) => raw(c, FrameType.PRIORITY, 0, 0, [0, 0, 0, 0, 255]), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  {
    section: "6.3", sends: "PRIORITY of 4 octets",
    frames: (c) => {
      headers(c, 1, HOLD);
      raw(c, FrameType.PRIORITY, 0, 1, [0x80, 0, 0, 1]);
    },
    expect: { stream: ErrorCode.FRAME_SIZE_ERROR, on: 1 },
  },
  {
    section: "6.3", sends: "PRIORITY on an idle stream, then HEADERS on a lower one",
    frames: (c) => {
      raw(c, FrameType.PRIORITY, 0, 3, [0, 0, 0, 0, 255]);
      headers(c, 1, REQUEST);
    },
    expect: "answered",
  },
  { section: "6.4", sends: "RST_STREAM on stream 0", frames: (c) => raw(c, FrameType.RST_STREAM, 0, 0, [0, 0, 0, 8]), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  {
    section: "6.4", sends: "RST_STREAM of 3 octets",
    frames: (c) => {
      headers(c, 1, HOLD);
      raw(c, FrameType.RST_STREAM, 0, 1, [0, 0, 8]);
    },
    expect: { connection: ErrorCode.FRAME_SIZE_ERROR },
  },
  { section: "6.5", sends: "SETTINGS ACK with a payload", frames: (c) => raw(c, FrameType.SETTINGS, Flag.ACK, 0, [0, 1, 0, 0, 0x10, 0]), expect: { connection: ErrorCode.FRAME_SIZE_ERROR } },
  { section: "6.5", sends: "SETTINGS on a stream", frames: (c) => raw(c, FrameType.SETTINGS, 0, 1, []), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  { section: "6.5", sends: "SETTINGS of 3 octets", frames: (c) => raw(c, FrameType.SETTINGS, 0, 0, [0, 1, 0]), expect: { connection: ErrorCode.FRAME_SIZE_ERROR } },
  { section: "6.5.2", sends: "SETTINGS_ENABLE_PUSH 2", frames: (c) => c.settings([[Setting.ENABLE_PUSH, 2]]), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  { section: "6.5.2", sends: "SETTINGS_INITIAL_WINDOW_SIZE 2^31", frames: (c) => c.settings([[Setting.INITIAL_WINDOW_SIZE, 2 ** 31]]), expect: { connection: ErrorCode.FLOW_CONTROL_ERROR } },
  { section: "6.5.2", sends: "SETTINGS_MAX_FRAME_SIZE 16383", frames: (c) => c.settings([[Setting.MAX_FRAME_SIZE, 16_383]]), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  { section: "6.5.2", sends: "an unknown setting, then a request", frames: (c) => {
    c.settings([[0xff, 1]]);
    headers(c, 1, REQUEST);
  }, expect: "answered" },
  { section: "6.7", sends: "PING of 7 octets", frames: (c) => raw(c, FrameType.PING, 0, 0, Buffer.alloc(7)), expect: { connection: ErrorCode.FRAME_SIZE_ERROR } },
  { section: "6.7", sends: "PING on a stream", frames: (c) => raw(c, FrameType.PING, 0, 1, Buffer.alloc(8)), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  { section: "6.8", sends: "GOAWAY on a stream", frames: (c) => raw(c, FrameType.GOAWAY, 0, 1, Buffer.alloc(8)), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  { section: "6.9", sends: "WINDOW_UPDATE of 0 on the connection", frames: (c) => c.windowUpdate(0, 0), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  {
    section: "6.9", sends: "WINDOW_UPDATE of 0 on a stream",
    frames: (c) => {
      headers(c, 1, HOLD);
      c.windowUpdate(1, 0);
    },
    expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 },
  },
  { section: "6.9", sends: "WINDOW_UPDATE of 3 octets", frames: (c) => raw(c, FrameType.WINDOW_UPDATE, 0, 0, [0, 0, 1]), expect: { connection: ErrorCode.FRAME_SIZE_ERROR } },
  {
    section: "6.9.1", sends: "WINDOW_UPDATE taking the connection window over 2^31-1",
    frames: (c) => {
      c.windowUpdate(0, 2 ** 31 - 1);
    },
    expect: { connection: ErrorCode.FLOW_CONTROL_ERROR },
  },
  {
    section: "6.10", sends: "CONTINUATION after END_HEADERS",
    frames: (c) => {
      headers(c, 1, HOLD, Flag.END_HEADERS);
      c.write(frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, c.encode([["x", "y"]])));
    },
    expect: { connection: ErrorCode.PROTOCOL_ERROR },
  },
  { section: "8.1", sends: "PUSH_PROMISE", frames: (c) => raw(c, FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, [0, 0, 0, 2]), expect: { connection: ErrorCode.PROTOCOL_ERROR } },
  { section: "8.2.1", sends: "an uppercase header name", frames: request([["X-Upper", "1"]]), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 } },
  { section: "8.2.1", sends: "a header value with a line feed", frames: request([["x-a", "1\n2"]]), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 } },
  { section: "8.2.2", sends: "connection: keep-alive", frames: request([["connection", "keep-alive"]]), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 } },
  { section: "8.2.2", sends: "transfer-encoding: chunked", frames: request([["transfer-encoding", "chunked"]]), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 } },
  { section: "8.2.2", sends: "upgrade", frames: request([["upgrade", "h2c"]]), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 } },
  { section: "8.2.2", sends: "te: gzip", frames: request([["te", "gzip"]]), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 } },
  { section: "8.2.2", sends: "te: trailers (as gRPC clients do)", frames: request([["te", "trailers"]]), expect: "answered" },
  { section: "8.3", sends: "a pseudo-header after a regular header", frames: request([], [["x-a", "1"]]), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 } },
  { section: "8.3", sends: "an unknown pseudo-header", frames: (c) => headers(c, 1, [[":weird", "1"], ...REQUEST]), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 } },
  { section: "8.3", sends: "the response pseudo-header :status", frames: (c) => headers(c, 1, [[":status", "200"], ...REQUEST]), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 } },
  { section: "8.3", sends: ":path twice", frames: (c) => headers(c, 1, [...REQUEST.slice(0, 3), [":path", "/"], REQUEST[3]!]), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 } },
  ...[":method", ":scheme", ":path"].map((name): Case => ({
    section: "8.3.1", sends: `no ${name}`, frames: (c) => headers(c, 1, REQUEST.filter(([n]) => n !== name)), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 },
  })),
  { section: "8.3.1", sends: "an empty :path", frames: (c) => headers(c, 1, REQUEST.map(([n, v]) => [n, n === ":path" ? "" : v] as [string, string])), expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 } },
  {
    section: "8.1", sends: "trailers with a pseudo-header",
    frames: (c) => {
      headers(c, 1, REQUEST, Flag.END_HEADERS);
      headers(c, 1, [[":path", "/"]]);
    },
    expect: { stream: ErrorCode.PROTOCOL_ERROR, on: 1 },
  },
];

describe("RFC 9113", () => {
  for (const k of CASES) {
    test(`${k.section}: ${k.sends}`, async () => {
      const c = await H2TestClient.connect(port);
      await k.frames(c);
      const e = k.expect;
      if (e === "answered") {
        await c.until(() => c.headerBlocks(1).some((h) => h.some(([n, v]) => n === ":status" && v === "200")), 5000, "the answer");
        expect(c.goAway()).toBeUndefined();
      } else if ("connection" in e) {
        await c.until(() => c.closed, 5000, "the connection to close");
        expect(c.goAway()?.code).toBe(e.connection);
      } else {
        await c.until(() => c.resetCode(e.on) !== undefined, 5000, "RST_STREAM");
        expect(c.resetCode(e.on)).toBe(e.stream);
        // a stream error leaves the connection serving
        headers(c, 101, REQUEST);
        await c.until(() => c.headerBlocks(101).length > 0, 5000, "an answer on another stream");
        expect(c.goAway()).toBeUndefined();
      }
      c.close();
    });
  }
});
