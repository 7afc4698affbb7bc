// An HTTP/2 client at the level of frames, so a test decides exactly which SETTINGS,
// WINDOW_UPDATE and DATA frames the server sees and when — as grpc-go does when it
// raises its windows — and sees every frame the server sends.
import * as net from "node:net";
import * as tls from "node:tls";
import {
  DEFAULT_WINDOW, ErrorCode, Flag, FRAME_HEADER_BYTES, frame, FrameType, PREFACE, settingsFrame, windowUpdateFrame,
} from "../../src/api/h2/frames.ts";
import { type HeaderList, HpackDecoder, HpackEncoder } from "../../src/api/h2/hpack.ts";

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** what a client presents to a server over TLS (ALPN h2, server name localhost) */
export interface TestClientTls {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export class H2TestClient {
  readonly frames: Frame[] = [];
  /** DATA bytes received per stream */
  readonly received = new Map<number, number>();
  closed = false;
  private readonly socket: net.Socket;
  private buf = Buffer.alloc(0);
  private readonly encoder = new HpackEncoder();
  private readonly decoder = new HpackDecoder(4096, 16 * 1024 * 1024);
  private readonly decoded = new Map<number, HeaderList[]>();
  private block: Buffer[] = [];
  private nextStreamId = 1;
  private waiters: Array<() => void> = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (d: Buffer) => this.onData(d));
    socket.on("close", () => {
      this.closed = true;
      this.notify();
    });
    socket.on("error", () => {});
  }

  /** Connects and sends the preface with `settings` (none: RFC defaults, a 65,535-byte window). */
  static async connect(port: number, settings: Array<[number, number]> = [], secure?: TestClientTls): Promise<H2TestClient> {
    const socket = secure
      ? tls.connect({ host: "127.0.0.1", port, servername: "localhost", ALPNProtocols: ["h2"], ...secure })
      : net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => socket.once(secure ? "secureConnect" : "connect", resolve).once("error", reject));
    const c = new H2TestClient(socket);
    socket.write(Buffer.concat([PREFACE, settingsFrame(settings)]));
    return c;
  }

  /** Writes; false once the socket holds more than its buffer (the server is not reading). */
  write(bytes: Uint8Array): boolean {
    return this.socket.write(bytes);
  }

  /** Resolves once the socket's buffer drained (or the connection closed). */
  drained(): Promise<void> {
    if (this.closed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once("drain", resolve);
      this.socket.once("close", resolve);
    });
  }

  /** A new client stream id. */
  nextId(): number {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    return id;
  }

  /** `headers` HPACK-encoded by this connection's encoder. */
  encode(headers: HeaderList): Uint8Array {
    return this.encoder.encode(headers);
  }

  /** The GOAWAY the server sent: its error code and debug text. */
  goAway(): { lastStreamId: number; code: number; reason: string } | undefined {
    const f = this.frames.find((x) => x.type === FrameType.GOAWAY);
    return f && { lastStreamId: f.payload.readUInt32BE(0), code: f.payload.readUInt32BE(4), reason: f.payload.subarray(8).toString() };
  }

  /** The error code of the RST_STREAM the server sent on `streamId`. */
  resetCode(streamId: number): number | undefined {
    return this.frames.find((f) => f.type === FrameType.RST_STREAM && f.streamId === streamId)?.payload.readUInt32BE(0);
  }

  /** The header blocks the server sent on `streamId`, decoded in order. */
  headerBlocks(streamId: number): HeaderList[] {
    return this.decoded.get(streamId) ?? [];
  }

  /** The grpc-status and grpc-message the server ended `streamId` with. */
  grpcStatus(streamId: number): { status: string; message: string } | undefined {
    for (const block of this.headerBlocks(streamId)) {
      const status = block.find(([n]) => n === "grpc-status");
      if (status) return { status: status[1], message: decodeURIComponent(block.find(([n]) => n === "grpc-message")?.[1] ?? "") };
    }
    return undefined;
  }

  /** Opens a request stream; returns its id. */
  request(path: string, body?: Uint8Array, extra: HeaderList = []): number {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const headers: HeaderList = [[":method", "POST"], [":scheme", "http"], [":path", path], [":authority", "test"], ...extra];
    const block = this.encoder.encode(headers);
    this.write(frame(FrameType.HEADERS, Flag.END_HEADERS | (body ? 0 : Flag.END_STREAM), id, block));
    if (body) this.write(frame(FrameType.DATA, Flag.END_STREAM, id, body));
    return id;
  }

  /** Opens a request stream whose body follows in `data` frames. */
  open(path: string): number {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const headers: HeaderList = [[":method", "POST"], [":scheme", "http"], [":path", path], [":authority", "test"]];
    this.write(frame(FrameType.HEADERS, Flag.END_HEADERS, id, this.encoder.encode(headers)));
    return id;
  }

  data(streamId: number, bytes: Uint8Array, end = false): void {
    this.write(frame(FrameType.DATA, end ? Flag.END_STREAM : 0, streamId, bytes));
  }

  /** WINDOW_UPDATE increments the server sent for `streamId`, summed */
  credit(streamId: number): number {
    let n = 0;
    for (const f of this.frames) if (f.type === FrameType.WINDOW_UPDATE && f.streamId === streamId) n += f.payload.readUInt32BE(0);
    return n;
  }

  settings(settings: Array<[number, number]>): void {
    this.write(settingsFrame(settings));
  }

  windowUpdate(streamId: number, increment: number): void {
    this.write(windowUpdateFrame(streamId, increment));
  }

  /** Resolves when `check` holds, or fails after `ms`. */
  async until(check: () => boolean, ms = 5000, what = "the expected frames"): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 50));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits `ms`, so a test can show that nothing more arrives. */
  async quietFor(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= FRAME_HEADER_BYTES) {
      const length = this.buf.readUIntBE(0, 3);
      if (this.buf.length < FRAME_HEADER_BYTES + length) break;
      const f: Frame = {
        type: this.buf[3]!,
        flags: this.buf[4]!,
        streamId: this.buf.readUInt32BE(5) & 0x7fffffff,
        payload: Buffer.from(this.buf.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length)),
      };
      this.buf = this.buf.subarray(FRAME_HEADER_BYTES + length);
      this.frames.push(f);
      if (f.type === FrameType.DATA) this.received.set(f.streamId, (this.received.get(f.streamId) ?? 0) + length);
      if (f.type === FrameType.HEADERS || f.type === FrameType.CONTINUATION) {
        this.block.push(f.payload);
        if (f.flags & Flag.END_HEADERS) {
          const list = this.decoder.decode(Buffer.concat(this.block));
          this.block = [];
          this.decoded.set(f.streamId, [...(this.decoded.get(f.streamId) ?? []), list]);
        }
      }
      // settings are acknowledged, as every peer must
      if (f.type === FrameType.SETTINGS && !(f.flags & Flag.ACK)) this.write(frame(FrameType.SETTINGS, Flag.ACK, 0, new Uint8Array(0)));
    }
    this.notify();
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

export { DEFAULT_WINDOW, ErrorCode, Flag, FrameType };
