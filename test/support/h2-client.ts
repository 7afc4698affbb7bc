// An HTTP/2 client at the level of frames, so a test decides exactly which SETTINGS,
// WINDOW_UPDATE and DATA frames the server sees and when — as grpc-go does when it
// raises its windows — and sees every frame the server sends.
import * as net from "node:net";
import {
  DEFAULT_WINDOW, ErrorCode, Flag, FRAME_HEADER_BYTES, frame, FrameType, PREFACE, settingsFrame, windowUpdateFrame,
} from "../../src/api/h2/frames.ts";
import { type HeaderList, HpackEncoder } from "../../src/api/h2/hpack.ts";

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export class H2TestClient {
  readonly frames: Frame[] = [];
  /** DATA bytes received per stream */
  readonly received = new Map<number, number>();
  closed = false;
  private readonly socket: net.Socket;
  private buf = Buffer.alloc(0);
  private readonly encoder = new HpackEncoder();
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
  static async connect(port: number, settings: Array<[number, number]> = []): Promise<H2TestClient> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const c = new H2TestClient(socket);
    socket.write(Buffer.concat([PREFACE, settingsFrame(settings)]));
    return c;
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
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
