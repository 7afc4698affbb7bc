// The server side of one HTTP/2 connection (RFC 9113) on a TCP or TLS socket: frames in,
// streams out to the application, responses back as frames under flow control.
//
// strata serves gRPC on this instead of node:http2 because Bun's node:http2 (1.4) does not
// apply a peer's SETTINGS_INITIAL_WINDOW_SIZE increase to streams already open: etcd's Go
// client raises it after large lists, then waits for data the server believes it may not
// send, and a long-lived watch stops for good. Owning the connection also gives fair
// scheduling between streams and byte-exact backpressure for every response.
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { log } from "../../observe/log.ts";
import {
  ConnectionError, DEFAULT_MAX_FRAME, DEFAULT_WINDOW, ErrorCode, Flag, FRAME_HEADER_BYTES, frameHeader, FrameType,
  goAwayFrame, headerFrames, MAX_FRAME_LIMIT, MAX_WINDOW, PREFACE, rstStreamFrame, Setting, settingsFrame,
  windowUpdateFrame, frame,
} from "./frames.ts";
import { type HeaderList, HpackDecoder, HpackEncoder, HpackError } from "./hpack.ts";
import { H2Stream, type StreamHost } from "./stream.ts";

/** what we let a peer send on one stream before it waits for us to read */
const STREAM_RECEIVE_WINDOW = 1024 * 1024;
/** what we let a peer send on the whole connection before WINDOW_UPDATE (grpc-go's largest) */
const CONNECTION_RECEIVE_WINDOW = 16 * 1024 * 1024;
/** largest header block accepted, HEADERS plus CONTINUATION, compressed and decoded */
const MAX_HEADER_BYTES = 1024 * 1024;
/** bytes gathered into one socket write */
const WRITE_BATCH_BYTES = 256 * 1024;
/** streams one connection may have open at once (etcd's default is unlimited; grpc-go clients queue beyond it) */
const MAX_CONCURRENT_STREAMS = 10_000;
/** control frames (PING and SETTINGS answers, resets) waiting for a peer that does not read */
const MAX_QUEUED_CONTROL_FRAMES = 10_000;
/** a peer that has not sent the connection preface by then is dropped */
const PREFACE_TIMEOUT_MS = 10_000;

export type StreamHandler = (stream: H2Stream) => void;

export class H2Connection implements StreamHost {
  private readonly streams = new Map<number, H2Stream>();
  private lastStreamId = 0;
  private readonly decoder = new HpackDecoder(4096, MAX_HEADER_BYTES);
  private readonly encoder = new HpackEncoder();

  // reading
  private pending: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  /** a header block in CONTINUATION frames: its stream, flags and pieces so far */
  private headerBlock: { streamId: number; endStream: boolean; pieces: Uint8Array[]; bytes: number } | undefined;
  private recvWindow = DEFAULT_WINDOW;
  private recvUnacked = 0;

  // writing
  private sendWindow = DEFAULT_WINDOW;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  /** frames that go out before any DATA (settings, pings, window updates, headers, resets) */
  private control: Buffer[] = [];
  /** streams with DATA or trailers to send, in turn */
  private ready: H2Stream[] = [];
  private readonly inReady = new Set<H2Stream>();
  private flushScheduled = false;
  private socketFull = false;

  /** we sent GOAWAY: no new streams; the connection ends when the last one closes */
  private goingAway = false;
  private ended = false;
  private readonly closeListeners: Array<() => void> = [];
  private prefaceTimer: ReturnType<typeof setTimeout> | undefined;

  /** the verified client certificate's subject CN, read once per connection */
  peerCommonName(): string | undefined {
    if (this.peerCn === null) {
      const tls = this.socket as Partial<TLSSocket>;
      const cn = tls.authorized && tls.getPeerCertificate ? tls.getPeerCertificate().subject?.CN as string | string[] | undefined : undefined;
      this.peerCn = Array.isArray(cn) ? cn[0] : cn;
    }
    return this.peerCn;
  }
  private peerCn: string | undefined | null = null;

  constructor(private readonly socket: Socket, private readonly onStream: StreamHandler) {
    socket.setNoDelay?.(true);
    socket.on("data", (chunk: Buffer) => this.onBytes(chunk));
    socket.on("drain", () => {
      this.socketFull = false;
      this.flush();
    });
    socket.on("error", () => this.teardown());
    socket.on("close", () => this.teardown());
    this.prefaceTimer = setTimeout(() => this.prefaceSeen || this.destroy(), PREFACE_TIMEOUT_MS);
  }

  onClose(listener: () => void): void {
    if (this.ended) listener();
    else this.closeListeners.push(listener);
  }

  /** Graceful close: no new streams; streams under way finish, then the connection ends. */
  goAway(): void {
    if (this.goingAway || this.ended) return;
    this.goingAway = true;
    this.control.push(goAwayFrame(this.lastStreamId, ErrorCode.NO_ERROR));
    this.scheduleFlush();
    this.endIfIdle();
  }

  /** Cuts the connection now. */
  destroy(): void {
    this.socket.destroy();
    this.teardown();
  }

  // ---- reading ----

  private onBytes(chunk: Buffer): void {
    if (this.ended) return;
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    try {
      if (!this.prefaceSeen && !this.readPreface()) return;
      this.readFrames();
      if (this.control.length > MAX_QUEUED_CONTROL_FRAMES) {
        throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "too many answers queued for a client that does not read them");
      }
    } catch (err) {
      if (err instanceof ConnectionError) return this.fail(err.code, err.message);
      if (err instanceof HpackError) return this.fail(ErrorCode.COMPRESSION_ERROR, err.message);
      this.fail(ErrorCode.INTERNAL_ERROR, String(err));
    }
  }

  private readPreface(): boolean {
    const n = Math.min(this.pending.length, PREFACE.length);
    if (this.pending.compare(PREFACE, 0, n, 0, n) !== 0) {
      this.refuseNonHttp2();
      return false;
    }
    if (this.pending.length < PREFACE.length) return false;
    this.pending = this.pending.subarray(PREFACE.length);
    this.prefaceSeen = true;
    clearTimeout(this.prefaceTimer);
    // our SETTINGS wait for the client's preface, so an HTTP/1 client gets only a plain answer
    this.control.push(
      settingsFrame([
        [Setting.INITIAL_WINDOW_SIZE, STREAM_RECEIVE_WINDOW],
        [Setting.MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS],
        [Setting.MAX_HEADER_LIST_SIZE, MAX_HEADER_BYTES],
        [Setting.ENABLE_PUSH, 0],
      ]),
      windowUpdateFrame(0, CONNECTION_RECEIVE_WINDOW - DEFAULT_WINDOW),
    );
    this.recvWindow = CONNECTION_RECEIVE_WINDOW;
    this.scheduleFlush();
    return true;
  }

  /** An HTTP/1 request (a browser, curl without --http2-prior-knowledge) gets a plain answer. */
  private refuseNonHttp2(): void {
    const body = "strata serves the etcd v3 gRPC API over HTTP/2 here; use an etcd v3 client\n";
    this.socket.end(
      `HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
    );
    this.ended = true;
    this.teardown();
  }

  private readFrames(): void {
    let offset = 0;
    const buf = this.pending;
    while (buf.length - offset >= FRAME_HEADER_BYTES && !this.ended) {
      const length = (buf[offset]! << 16) | (buf[offset + 1]! << 8) | buf[offset + 2]!;
      if (length > DEFAULT_MAX_FRAME) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes exceeds ${DEFAULT_MAX_FRAME}`);
      if (buf.length - offset < FRAME_HEADER_BYTES + length) break;
      const type = buf[offset + 3]!;
      const flags = buf[offset + 4]!;
      const streamId = buf.readUInt32BE(offset + 5) & 0x7fffffff;
      const payload = buf.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + length);
      offset += FRAME_HEADER_BYTES + length;
      this.onFrame(type, flags, streamId, payload);
    }
    this.pending = offset === buf.length ? Buffer.alloc(0) : buf.subarray(offset);
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.headerBlock && type !== FrameType.CONTINUATION) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "expected CONTINUATION");
    }
    switch (type) {
      case FrameType.DATA:
        return this.onData(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.onHeaders(flags, streamId, payload);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, streamId, payload);
      case FrameType.RST_STREAM:
        if (streamId === 0 || payload.length !== 4) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad RST_STREAM");
        if (this.streams.has(streamId)) this.closeStream(this.streams.get(streamId)!);
        return;
      case FrameType.SETTINGS:
        return this.onSettings(flags, streamId, payload);
      case FrameType.PING:
        if (streamId !== 0 || payload.length !== 8) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad PING");
        if (!(flags & Flag.ACK)) {
          this.control.push(frame(FrameType.PING, Flag.ACK, 0, payload));
          this.scheduleFlush();
        }
        return;
      case FrameType.GOAWAY:
        // the client opens no new streams; those under way finish
        this.goingAway = true;
        return this.endIfIdle();
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "a client cannot push");
      default:
        // PRIORITY and unknown frame types are ignored (RFC 9113 §5.5)
        return;
    }
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    // the whole frame, padding included, counts against both windows
    if (payload.length > this.recvWindow) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window exceeded");
    this.recvWindow -= payload.length;
    const stream = this.streams.get(streamId);
    if (!stream) {
      if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream");
      // a stream we closed: its data is dropped, and given back at once
      return this.creditConnection(payload.length);
    }
    if (stream.remoteClosed) {
      this.creditConnection(payload.length);
      return this.reset(stream, ErrorCode.STREAM_CLOSED);
    }
    if (payload.length > stream.recvWindow) {
      this.creditConnection(payload.length);
      return this.reset(stream, ErrorCode.FLOW_CONTROL_ERROR);
    }
    stream.recvWindow -= payload.length;
    const data = unpad(flags, payload);
    // padding is consumed at once
    if (data.length < payload.length) this.consumed(stream, payload.length - data.length);
    if (data.length > 0) stream.receive(data);
    if (flags & Flag.END_STREAM) this.remoteEnded(stream);
  }

  /**
   * Gives the peer back connection window for bytes read or dropped. Credit follows what
   * the application consumed, so the request bytes a connection can make strata hold are
   * bounded by the connection window, however many streams it opens.
   */
  private creditConnection(bytes: number): void {
    this.recvUnacked += bytes;
    if (this.recvUnacked >= CONNECTION_RECEIVE_WINDOW / 4) {
      this.control.push(windowUpdateFrame(0, this.recvUnacked));
      this.recvWindow += this.recvUnacked;
      this.recvUnacked = 0;
      this.scheduleFlush();
    }
  }

  consumed(stream: H2Stream, bytes: number): void {
    this.creditConnection(bytes);
    if (stream.remoteClosed || stream.closed) return;
    stream.recvConsumed += bytes;
    // credit in pieces of a quarter window, as grpc-go does, not one frame per chunk
    if (stream.recvConsumed >= STREAM_RECEIVE_WINDOW / 4) {
      this.control.push(windowUpdateFrame(stream.id, stream.recvConsumed));
      stream.recvWindow += stream.recvConsumed;
      stream.recvConsumed = 0;
      this.scheduleFlush();
    }
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let block = unpad(flags, payload);
    if (flags & Flag.PRIORITY) {
      if (block.length < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority");
      block = block.subarray(5);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) return this.onHeaderBlock(streamId, endStream, block);
    this.headerBlock = { streamId, endStream, pieces: [Buffer.from(block)], bytes: block.length };
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const hb = this.headerBlock;
    if (!hb || hb.streamId !== streamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION");
    hb.bytes += payload.length;
    if (hb.bytes > MAX_HEADER_BYTES) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    hb.pieces.push(Buffer.from(payload));
    if (!(flags & Flag.END_HEADERS)) return;
    this.headerBlock = undefined;
    this.onHeaderBlock(streamId, hb.endStream, Buffer.concat(hb.pieces));
  }

  private onHeaderBlock(streamId: number, endStream: boolean, block: Uint8Array): void {
    // decoded even when the stream is refused, to keep the compression state in step
    const list = this.decoder.decode(block);
    const existing = this.streams.get(streamId);
    if (existing) {
      // trailers from the client: they must end the stream
      if (!endStream || existing.remoteClosed) return this.reset(existing, ErrorCode.PROTOCOL_ERROR);
      return this.remoteEnded(existing);
    }
    if (streamId <= this.lastStreamId || streamId % 2 === 0) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS opening stream ${streamId} after ${this.lastStreamId}`);
    }
    this.lastStreamId = streamId;
    if (this.goingAway || this.streams.size >= MAX_CONCURRENT_STREAMS) {
      this.control.push(rstStreamFrame(streamId, ErrorCode.REFUSED_STREAM));
      return this.scheduleFlush();
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of list) {
      const had = headers[name];
      headers[name] = had === undefined ? value : `${had}, ${value}`;
    }
    const stream = new H2Stream(streamId, headers, this, this.peerInitialWindow, STREAM_RECEIVE_WINDOW);
    if (!headers[":method"] || !headers[":path"]) {
      this.control.push(rstStreamFrame(streamId, ErrorCode.PROTOCOL_ERROR));
      return this.scheduleFlush();
    }
    this.streams.set(streamId, stream);
    if (endStream) stream.receiveEnd();
    this.onStream(stream);
  }

  private remoteEnded(stream: H2Stream): void {
    stream.receiveEnd();
    if (stream.localClosed) this.closeStream(stream);
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) return;
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS of a bad length");
    for (let i = 0; i < payload.length; i += 6) {
      const id = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE above 2^31-1");
        // §6.9.2: the change applies to every open stream's window, also to credit already granted
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) {
          s.sendWindow += delta;
          if (s.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "stream window above 2^31-1");
          if (delta > 0) this.schedule(s);
        }
      } else if (id === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > MAX_FRAME_LIMIT) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range");
        this.peerMaxFrame = value;
      } else if (id === Setting.ENABLE_PUSH && value > 1) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "ENABLE_PUSH above 1");
      }
      // HEADER_TABLE_SIZE needs nothing: our encoder never uses the dynamic table
    }
    this.control.push(frame(FrameType.SETTINGS, Flag.ACK, 0, new Uint8Array(0)));
    this.scheduleFlush();
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE of a bad length");
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1");
      return this.scheduleFlush();
    }
    const stream = this.streams.get(streamId);
    if (!stream) return;
    if (increment === 0) return this.reset(stream, ErrorCode.PROTOCOL_ERROR);
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) return this.reset(stream, ErrorCode.FLOW_CONTROL_ERROR);
    this.schedule(stream);
  }

  // ---- writing ----

  sendHeaders(stream: H2Stream, headers: HeaderList, endStream: boolean): void {
    if (stream.closed) return;
    this.control.push(...headerFrames(stream.id, this.encoder.encode(headers), endStream, this.peerMaxFrame));
    if (endStream) this.localEnded(stream);
    this.scheduleFlush();
  }

  schedule(stream: H2Stream): void {
    if (this.inReady.has(stream) || !this.wantsTurn(stream)) return;
    this.inReady.add(stream);
    this.ready.push(stream);
    this.scheduleFlush();
  }

  reset(stream: H2Stream, code: number): void {
    if (stream.closed) return;
    this.control.push(rstStreamFrame(stream.id, code));
    this.closeStream(stream);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.ended) return;
    this.flushScheduled = true;
    queueMicrotask(() => this.flush());
  }

  /**
   * Writes control frames, then DATA round-robin between streams, one frame per turn, as
   * far as the windows and the socket allow.
   */
  private flush(): void {
    this.flushScheduled = false;
    if (this.ended || this.socketFull) return;
    const batch: Buffer[] = this.control;
    this.control = [];
    let bytes = 0;
    for (const f of batch) bytes += f.length;
    const turns = this.ready;
    this.ready = [];
    /** streams waiting for the connection window; they keep their place */
    const waiting: H2Stream[] = [];
    let i = 0;
    for (; i < turns.length && bytes < WRITE_BATCH_BYTES; i++) {
      const s = turns[i]!;
      if (s.outbound.length > 0 && this.sendWindow <= 0 && !s.closed) {
        waiting.push(s);
        continue;
      }
      this.inReady.delete(s);
      bytes += this.emit(s, batch);
      // a stream with more to send takes another turn after the others
      if (this.wantsTurn(s)) {
        this.inReady.add(s);
        turns.push(s);
      }
      if (this.control.length) {
        for (const f of this.control) bytes += f.length;
        batch.push(...this.control);
        this.control = [];
      }
    }
    // streams not reached keep their turn, ahead of any scheduled meanwhile
    this.ready = waiting.concat(turns.slice(i), this.ready);
    if (batch.length > 0 && !this.socket.write(batch.length === 1 ? batch[0]! : Buffer.concat(batch, bytes))) {
      this.socketFull = true;
    }
    if (!this.socketFull && this.ready.length > waiting.length) this.scheduleFlush();
  }

  /** Whether `s` has a frame it may send once the connection window allows. */
  private wantsTurn(s: H2Stream): boolean {
    if (s.closed) return false;
    if (s.outbound.length > 0) return s.sendWindow > 0;
    return s.ending !== undefined && !s.localClosed;
  }

  /** Puts at most one DATA frame of `s` (or its end) into `batch`; returns the bytes added. */
  private emit(s: H2Stream, batch: Buffer[]): number {
    if (s.closed) return 0;
    const first = s.outbound[0];
    if (first) {
      const n = Math.min(first.length - s.sentOfFirst, s.sendWindow, this.sendWindow, this.peerMaxFrame);
      if (n <= 0) return 0;
      const piece = first.subarray(s.sentOfFirst, s.sentOfFirst + n);
      s.sentOfFirst += n;
      if (s.sentOfFirst === first.length) {
        s.outbound.shift();
        s.sentOfFirst = 0;
      }
      s.sendWindow -= n;
      this.sendWindow -= n;
      // a response without trailers ends on its last DATA frame
      const last = s.outbound.length === 0 && s.ending !== undefined && s.ending.trailers === undefined;
      batch.push(frameHeader(n, FrameType.DATA, last ? Flag.END_STREAM : 0, s.id), Buffer.from(piece.buffer, piece.byteOffset, piece.length));
      s.sent(n);
      if (last) this.localEnded(s);
      return FRAME_HEADER_BYTES + n;
    }
    if (!s.ending || s.localClosed) return 0;
    let bytes = 0;
    if (s.ending.trailers) {
      for (const f of headerFrames(s.id, this.encoder.encode(s.ending.trailers), true, this.peerMaxFrame)) {
        batch.push(f);
        bytes += f.length;
      }
    } else {
      batch.push(frameHeader(0, FrameType.DATA, Flag.END_STREAM, s.id));
      bytes += FRAME_HEADER_BYTES;
    }
    this.localEnded(s);
    return bytes;
  }

  /** We sent END_STREAM; a client still sending is told to stop (grpc-go does the same). */
  private localEnded(s: H2Stream): void {
    s.localClosed = true;
    if (!s.remoteClosed) this.control.push(rstStreamFrame(s.id, ErrorCode.NO_ERROR));
    this.closeStream(s);
  }

  private closeStream(s: H2Stream): void {
    // request bytes nobody will read are given back to the connection
    if (!s.closed) this.creditConnection(s.unreadBytes);
    this.streams.delete(s.id);
    this.inReady.delete(s);
    s.close();
    this.endIfIdle();
  }

  private endIfIdle(): void {
    if (!this.goingAway || this.streams.size > 0 || this.ended) return;
    // let the last frames (and the GOAWAY) leave first
    queueMicrotask(() => {
      if (this.streams.size > 0 || this.ended) return;
      this.flush();
      this.socket.end();
      this.ended = true;
      this.teardown();
    });
  }

  /** A connection error: GOAWAY with `code`, then the socket closes. */
  private fail(code: number, message: string): void {
    if (this.ended) return;
    // a client's protocol error is the client's; our own failure is a bug to be seen
    log(code === ErrorCode.INTERNAL_ERROR ? "error" : "warn", "HTTP/2 connection ended with GOAWAY", { code, reason: message, streams: this.streams.size });
    this.socket.end(goAwayFrame(this.lastStreamId, code, message));
    this.ended = true;
    this.teardown();
  }

  private teardown(): void {
    this.ended = true;
    clearTimeout(this.prefaceTimer);
    for (const s of this.streams.values()) s.close();
    this.streams.clear();
    this.ready = [];
    this.inReady.clear();
    for (const l of this.closeListeners.splice(0)) l();
  }
}

/** A DATA or HEADERS payload without its padding (RFC 9113 §6.1). */
function unpad(flags: number, payload: Buffer): Buffer {
  if (!(flags & Flag.PADDED)) return payload;
  if (payload.length < 1) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "padded frame without its pad length");
  const pad = payload[0]!;
  if (pad >= payload.length) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame");
  return payload.subarray(1, payload.length - pad);
}
