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
import { log } from "../../util/log.ts";
import {
  ConnectionError, DEFAULT_MAX_FRAME, DEFAULT_WINDOW, ErrorCode, Flag, FRAME_HEADER_BYTES, frameHeader, FrameType,
  goAwayFrame, headerFrames, MAX_FRAME_LIMIT, MAX_WINDOW, PREFACE, rstStreamFrame, Setting, settingsFrame,
  windowUpdateFrame, frame,
} from "./frames.ts";
import { HeaderListTooLargeError, type HeaderList, HpackDecoder, HpackEncoder, HpackError } from "./hpack.ts";
import { RateBudget } from "./rate-budget.ts";
import { checkRequestHeaders } from "./request-headers.ts";
import { H2Stream, type StreamHost } from "./stream.ts";

/** what we let a peer send on one stream before it waits for us to read */
const STREAM_RECEIVE_WINDOW = 1024 * 1024;
/** what we let a peer send on the whole connection before WINDOW_UPDATE (grpc-go's largest) */
const CONNECTION_RECEIVE_WINDOW = 16 * 1024 * 1024;
/**
 * largest header list (SETTINGS_MAX_HEADER_LIST_SIZE: name + value + 32 per field): a
 * longer one refuses its stream; also the largest compressed header block held while its
 * CONTINUATION frames arrive: a longer one ends the connection (it cannot be decoded
 * without being held, and the compression state must stay in step)
 */
const MAX_HEADER_BYTES = 1024 * 1024;
/** frames one header block may take: 1 MiB in full 16 KiB frames takes 64 */
const MAX_HEADER_FRAMES = 128;
/** bytes gathered into one socket write */
const WRITE_BATCH_BYTES = 256 * 1024;
/**
 * Frames wait this many microtask turns before they are written: an answer's headers,
 * message and trailers, and the answers to the requests that came in one read, are ready
 * within a few turns of each other and then leave in one write. Written at once, a unary
 * call cost three writes (system calls) of its own; so 50,000 calls from 64 clients took
 * 150,000 writes, now under 10,000. Still before the event loop reads anything more.
 */
const FLUSH_DELAY_MICROTASKS = 32;
/**
 * streams one connection may have open at once (etcd's default is unlimited; grpc-go
 * clients queue beyond it); a stream the client reset counts until its handler returned
 */
export const MAX_CONCURRENT_STREAMS = 10_000;
/** control frames (PING and SETTINGS answers, resets) waiting for a peer that does not read */
const MAX_QUEUED_CONTROL_FRAMES = 10_000;
/** a peer that has not sent the connection preface by then is dropped */
const PREFACE_TIMEOUT_MS = 10_000;
/** closed streams remembered, to tell a frame on a closed stream from one on a stream never opened */
const CLOSED_REMEMBERED = 1000;

/**
 * Per-connection budgets of frames that cost work and ask for none (RFC 9113 §10.5): a
 * token bucket each, [per second, burst]. A client beyond one gets GOAWAY
 * ENHANCE_YOUR_CALM naming it; gRPC clients send a small fraction of these.
 */
const FRAME_BUDGETS = {
  /** refilled by each frame of response sent: grpc-go's BDP pings follow the data it reads */
  PING: [1000, 1000],
  SETTINGS: [100, 100],
  /** refilled by two per DATA frame sent: a client credits what it read, stream and connection */
  WINDOW_UPDATE: [1000, 10_000],
  PRIORITY: [1000, 1000],
  "empty DATA": [1000, 1000],
  "unknown-type": [1000, 1000],
  /**
   * streams the client reset while their handler still ran, or opened beyond
   * MAX_CONCURRENT_STREAMS (CVE-2023-44487, "rapid reset")
   */
  "reset-stream": [200, 1000],
} as const satisfies Record<string, readonly [number, number]>;
type BudgetKind = keyof typeof FRAME_BUDGETS;

/** What a handler returns: a promise settles when its work on the stream is over. */
export type StreamHandler = (stream: H2Stream) => void | Promise<unknown>;

export interface H2Options {
  /** a connection with no stream open for this long gets GOAWAY and closes (0: never) */
  idleTimeoutMs: number;
  /**
   * a stream whose queued response has not moved for this long (the client gives no
   * window, or does not read the socket) is reset with ENHANCE_YOUR_CALM, and its bytes dropped
   */
  stalledStreamTimeoutMs: number;
  /** at most this many streams at once, open or reset while their handler still runs */
  maxConcurrentStreams: number;
}

export const DEFAULT_H2_OPTIONS: H2Options = { idleTimeoutMs: 5 * 60_000, stalledStreamTimeoutMs: 60_000, maxConcurrentStreams: MAX_CONCURRENT_STREAMS };

/** How a stream closed, for frames that arrive on it afterwards. */
type Closed =
  /** the client ended its side (END_STREAM): any frame but WINDOW_UPDATE/RST_STREAM/PRIORITY is a connection error */
  | "ended"
  /** the client reset it: a frame but PRIORITY is a stream error STREAM_CLOSED */
  | "reset"
  /** we ended or refused it while the client could still be sending: its frames are dropped */
  | "local";

export class H2Connection implements StreamHost {
  private readonly streams = new Map<number, H2Stream>();
  private lastStreamId = 0;
  private readonly closed = new Map<number, Closed>();
  /** the ids in `closed`, oldest first from `closedNext` round (a ring: no iterator per stream) */
  private readonly closedIds = new Array<number>(CLOSED_REMEMBERED).fill(0);
  private closedNext = 0;
  /** streams whose handler still runs (their work counts until it returns) */
  private readonly working = new Set<H2Stream>();
  /** of those, streams already closed */
  private lingering = 0;
  private readonly budgets = Object.fromEntries(
    Object.entries(FRAME_BUDGETS).map(([kind, [perSecond, burst]]) => [kind, new RateBudget(perSecond, burst)]),
  ) as Record<BudgetKind, RateBudget>;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private stallTimer: ReturnType<typeof setInterval> | undefined;
  private readonly decoder = new HpackDecoder(4096, MAX_HEADER_BYTES);
  private readonly encoder = new HpackEncoder();

  // reading
  private pending: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  /** a header block in CONTINUATION frames: its stream, flags, frames and pieces so far (empty frames keep none) */
  private headerBlock: { streamId: number; endStream: boolean; selfDependent: boolean; pieces: Uint8Array[]; bytes: number; frames: number } | undefined;
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

  /**
   * until: a stream of this connection was reset for not moving, and since then nothing has
   * gone out on it and its client has given no window. Such a client does not read; for the
   * stall timeout after the reset its new large reads are refused rather than read into
   * memory (else the reads that waited behind the stalled ones came in as a second round).
   */
  private notReadingUntil = 0;

  /** whether this connection's client showed, lately, that it does not read its responses */
  notReading(): boolean {
    return this.notReadingUntil > performance.now();
  }

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

  constructor(private readonly socket: Socket, private readonly onStream: StreamHandler, private readonly options: H2Options = DEFAULT_H2_OPTIONS) {
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

  /** bytes held for the client now: request bytes received and not read, response bytes and answer frames queued */
  heldBytes(): number {
    let n = 0;
    for (const s of this.streams.values()) n += s.unreadBytes + s.queuedBytes;
    for (const f of this.control) n += f.length;
    return n;
  }

  /** Graceful close: no new streams; streams under way finish, then the connection ends. */
  goAway(reason = ""): void {
    if (this.goingAway || this.ended) return;
    this.goingAway = true;
    this.control.push(goAwayFrame(this.lastStreamId, ErrorCode.NO_ERROR, reason));
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
      // answers pile up only while the socket is full: the client sends and does not read
      if (this.socketFull && this.control.length > MAX_QUEUED_CONTROL_FRAMES) {
        throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `${this.control.length} answers queued for a client that does not read them`);
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
        [Setting.MAX_CONCURRENT_STREAMS, this.options.maxConcurrentStreams],
        [Setting.MAX_HEADER_LIST_SIZE, MAX_HEADER_BYTES],
        [Setting.ENABLE_PUSH, 0],
      ]),
      windowUpdateFrame(0, CONNECTION_RECEIVE_WINDOW - DEFAULT_WINDOW),
    );
    this.recvWindow = CONNECTION_RECEIVE_WINDOW;
    this.scheduleFlush();
    this.armIdleTimer();
    if (this.options.stalledStreamTimeoutMs > 0) {
      this.stallTimer = setInterval(() => this.resetStalled(), Math.max(100, this.options.stalledStreamTimeoutMs / 4));
      this.stallTimer.unref?.();
    }
    return true;
  }

  /**
   * Resets the streams whose queued response has not moved for the stall timeout (counted
   * from the first look after it last moved, so a stream gets between that and 1.5 times it).
   */
  private resetStalled(): void {
    const now = performance.now();
    const before = now - this.options.stalledStreamTimeoutMs;
    for (const s of this.streams.values()) {
      if (s.moved) {
        s.moved = false;
        s.progressAt = now;
      } else if (s.queuedBytes > 0 && s.progressAt < before) {
        this.reset(s, ErrorCode.ENHANCE_YOUR_CALM);
        this.notReadingUntil = now + this.options.stalledStreamTimeoutMs;
      }
    }
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
        return this.onRstStream(streamId, payload);
      case FrameType.SETTINGS:
        return this.onSettings(flags, streamId, payload);
      case FrameType.PING:
        if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `PING of ${payload.length} bytes, not 8`);
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
        if (!(flags & Flag.ACK)) {
          this.spend("PING");
          this.control.push(frame(FrameType.PING, Flag.ACK, 0, payload));
          this.scheduleFlush();
        }
        return;
      case FrameType.GOAWAY:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
        if (payload.length < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `GOAWAY of ${payload.length} bytes`);
        // the client opens no new streams; those under way finish
        this.goingAway = true;
        return this.endIfIdle();
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      case FrameType.PRIORITY:
        return this.onPriority(streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "a client cannot push");
      default:
        // unknown frame types are ignored (RFC 9113 §5.5), up to a budget
        return this.spend("unknown-type");
    }
  }

  /** Counts a frame against its budget; past it the connection ends (GOAWAY ENHANCE_YOUR_CALM). */
  private spend(kind: BudgetKind): void {
    const budget = this.budgets[kind];
    if (budget.take()) return;
    const what = kind === "reset-stream" ? "streams reset before their handler finished, or opened beyond the concurrency limit" : `${kind} frames`;
    throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `too many ${what}: more than ${budget.burst} at once or ${budget.perSecond} a second`);
  }

  /** Whether `streamId` is one the client has not opened yet (RFC 9113 §5.1 "idle"). */
  private isIdle(streamId: number): boolean {
    return streamId > this.lastStreamId || streamId % 2 === 0;
  }

  /** A stream error on a stream that is not open (a frame on a stream in no state to take it). */
  private resetClosed(streamId: number, code: number): void {
    this.spend("reset-stream");
    this.control.push(rstStreamFrame(streamId, code));
    this.scheduleFlush();
  }

  private onRstStream(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `RST_STREAM of ${payload.length} bytes, not 4`);
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    const stream = this.streams.get(streamId);
    if (!stream) {
      if (this.isIdle(streamId)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${streamId}`);
      return;
    }
    // work begun for a stream and thrown away before it was answered: what a rapid-reset
    // attack costs us. A stream already answered (a watch, a streamed read) that its client
    // cancels is ordinary, and many at once is what a client closing its watches sends;
    // it still counts against the stream limit until its handler returns.
    if (this.working.has(stream) && !stream.headersSent) this.spend("reset-stream");
    this.closeStream(stream, "reset");
  }

  private onPriority(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
    this.spend("PRIORITY");
    // a stream error, also on an idle stream (h2spec 5.3.1, 6.3): its id is then used up
    const refuse = (code: number) => {
      const open = this.streams.get(streamId);
      if (open) return this.reset(open, code);
      if (this.isIdle(streamId) && streamId % 2 === 1) this.lastStreamId = streamId;
      this.resetClosed(streamId, code);
    };
    if (payload.length !== 5) return refuse(ErrorCode.FRAME_SIZE_ERROR);
    if ((payload.readUInt32BE(0) & 0x7fffffff) === streamId) return refuse(ErrorCode.PROTOCOL_ERROR);
    // priorities are advice (RFC 9113 §5.3.2): streams take turns regardless
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    // the whole frame, padding included, counts against both windows
    if (payload.length > this.recvWindow) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window exceeded");
    this.recvWindow -= payload.length;
    const stream = this.streams.get(streamId);
    if (!stream) {
      if (this.isIdle(streamId)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
      // a stream we closed: its data is dropped, and given back at once
      this.creditConnection(payload.length);
      return this.onClosedStream(streamId, "DATA");
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
    if (data.length === 0 && !(flags & Flag.END_STREAM)) this.spend("empty DATA");
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
    let selfDependent = false;
    if (flags & Flag.PRIORITY) {
      if (block.length < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority");
      selfDependent = (block.readUInt32BE(0) & 0x7fffffff) === streamId;
      block = block.subarray(5);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) return this.onHeaderBlock(streamId, endStream, selfDependent, block);
    if (block.length > MAX_HEADER_BYTES) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `header block over ${MAX_HEADER_BYTES} bytes`);
    // copied: the frame is a view of a read buffer that would otherwise stay alive
    this.headerBlock = { streamId, endStream, selfDependent, pieces: block.length ? [Buffer.from(block)] : [], bytes: block.length, frames: 1 };
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const hb = this.headerBlock;
    if (!hb || hb.streamId !== streamId) {
      if (this.isIdle(streamId)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `CONTINUATION on idle stream ${streamId}`);
      if (this.closed.get(streamId) === "ended" || this.streams.get(streamId)?.remoteClosed) {
        throw new ConnectionError(ErrorCode.STREAM_CLOSED, `CONTINUATION on closed stream ${streamId}`);
      }
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `CONTINUATION without HEADERS on stream ${streamId}`);
    }
    hb.bytes += payload.length;
    hb.frames++;
    // counted as frames too: empty CONTINUATION frames add no bytes, yet each costs a read
    if (hb.frames > MAX_HEADER_FRAMES) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `header block in more than ${MAX_HEADER_FRAMES} frames`);
    if (hb.bytes > MAX_HEADER_BYTES) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `header block over ${MAX_HEADER_BYTES} bytes`);
    if (payload.length > 0) hb.pieces.push(Buffer.from(payload));
    if (!(flags & Flag.END_HEADERS)) return;
    this.headerBlock = undefined;
    this.onHeaderBlock(streamId, hb.endStream, hb.selfDependent, hb.pieces.length === 1 ? hb.pieces[0]! : Buffer.concat(hb.pieces, hb.bytes));
  }

  private onHeaderBlock(streamId: number, endStream: boolean, selfDependent: boolean, block: Uint8Array): void {
    // decoded whatever becomes of the stream, to keep the compression state in step; a list
    // over the limit was decoded whole but not kept, and refuses its stream only (grpc-go
    // answers RST_STREAM FRAME_SIZE_ERROR too)
    let list: HeaderList | undefined;
    try {
      list = this.decoder.decode(block);
    } catch (err) {
      if (!(err instanceof HeaderListTooLargeError)) throw err;
    }
    const existing = this.streams.get(streamId);
    if (existing) {
      // §5.1 half-closed (remote): nothing more may come but WINDOW_UPDATE, PRIORITY, RST_STREAM
      if (existing.remoteClosed) return this.reset(existing, ErrorCode.STREAM_CLOSED);
      if (!list) return this.reset(existing, ErrorCode.FRAME_SIZE_ERROR);
      // trailers from the client: they must end the stream, and carry no pseudo-header
      if (!endStream || selfDependent || typeof checkRequestHeaders(list, true) === "string") return this.reset(existing, ErrorCode.PROTOCOL_ERROR);
      return this.remoteEnded(existing);
    }
    if (streamId % 2 === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${streamId}: a client's streams are odd`);
    if (streamId <= this.lastStreamId) return this.onClosedStream(streamId, "HEADERS");
    this.lastStreamId = streamId;
    this.clearIdleTimer();
    const refuse = (code: number) => {
      this.remember(streamId, endStream ? "ended" : "local");
      this.control.push(rstStreamFrame(streamId, code));
      this.scheduleFlush();
      this.armIdleTimer();
    };
    if (this.goingAway) return refuse(ErrorCode.REFUSED_STREAM);
    if (this.streams.size + this.lingering >= this.options.maxConcurrentStreams) {
      // a client past the limit we announced, or one whose resets left handlers running
      this.spend("reset-stream");
      return refuse(ErrorCode.REFUSED_STREAM);
    }
    if (!list) return refuse(ErrorCode.FRAME_SIZE_ERROR);
    const headers = checkRequestHeaders(list);
    if (selfDependent || typeof headers === "string") return refuse(ErrorCode.PROTOCOL_ERROR);
    const stream = new H2Stream(streamId, headers, this, this.peerInitialWindow, STREAM_RECEIVE_WINDOW);
    this.streams.set(streamId, stream);
    if (endStream) stream.receiveEnd();
    const work = this.onStream(stream);
    if (work) {
      this.working.add(stream);
      const done = () => {
        this.working.delete(stream);
        if (!stream.closed) return;
        this.lingering--;
        this.armIdleTimer();
      };
      work.then(done, done);
    }
  }

  /** A frame that opens nothing on a stream that is closed (RFC 9113 §5.1 "closed"). */
  private onClosedStream(streamId: number, type: string): void {
    const how = this.closed.get(streamId);
    // after the client's END_STREAM nothing but WINDOW_UPDATE, PRIORITY, RST_STREAM may come
    if (how === "ended") throw new ConnectionError(ErrorCode.STREAM_CLOSED, `${type} on closed stream ${streamId}`);
    // after its RST_STREAM, a stream error
    if (how === "reset") return this.resetClosed(streamId, ErrorCode.STREAM_CLOSED);
    // a stream we ended or refused: the client may have sent before it knew (§5.4.2)
    if (how === "local" || type === "DATA") return;
    // HEADERS on a stream id below one already used, never opened itself
    throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS opening stream ${streamId} after ${this.lastStreamId}`);
  }

  /** Remembers how a stream closed, for the frames that may follow (the latest CLOSED_REMEMBERED streams). */
  private remember(streamId: number, how: Closed): void {
    if (this.closed.has(streamId)) return void this.closed.set(streamId, how);
    // stream ids start at 1: 0 is an empty place
    const oldest = this.closedIds[this.closedNext]!;
    if (oldest !== 0) this.closed.delete(oldest);
    this.closedIds[this.closedNext] = streamId;
    this.closedNext = (this.closedNext + 1) % CLOSED_REMEMBERED;
    this.closed.set(streamId, how);
  }

  /** Starts counting idle time when no stream is open or working. */
  private armIdleTimer(): void {
    if (this.idleTimer || this.ended || !this.prefaceSeen || this.options.idleTimeoutMs <= 0) return;
    if (this.streams.size > 0 || this.working.size > 0) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.streams.size === 0 && this.working.size === 0) this.goAway(`no stream open for ${this.options.idleTimeoutMs / 1000} s`);
    }, this.options.idleTimeoutMs);
    this.idleTimer.unref?.();
  }

  private clearIdleTimer(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private remoteEnded(stream: H2Stream): void {
    stream.receiveEnd();
    if (stream.localClosed) this.closeStream(stream, "ended");
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS of a bad length");
    this.spend("SETTINGS");
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
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `WINDOW_UPDATE of ${payload.length} bytes, not 4`);
    this.spend("WINDOW_UPDATE");
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    // window given: the client reads
    if (increment > 0) this.notReadingUntil = 0;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1");
      return this.scheduleFlush();
    }
    const stream = this.streams.get(streamId);
    if (!stream) {
      if (this.isIdle(streamId)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${streamId}`);
      return;
    }
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
    this.closeStream(stream, stream.remoteClosed ? "ended" : "local");
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.ended) return;
    this.flushScheduled = true;
    afterMicrotasks(FLUSH_DELAY_MICROTASKS, () => this.flush());
  }

  /**
   * Writes control frames, then DATA round-robin between streams, one frame per turn, as
   * far as the windows and the socket allow.
   */
  private flush(): void {
    this.flushScheduled = false;
    if (this.ended || this.socketFull) return;
    const batch: Uint8Array[] = this.control;
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
      if (s.hasOutbound && this.sendWindow <= 0 && !s.closed) {
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
    if (s.hasOutbound) return s.sendWindow > 0;
    return s.ending !== undefined && !s.localClosed;
  }

  /**
   * Puts at most one DATA frame of `s` (or its end) into `batch`; returns the bytes added.
   * The frame carries as many queued chunks as fit: a watch stream queues one small
   * message per watcher, and a frame each cost both ends more than the bytes did.
   */
  private emit(s: H2Stream, batch: Uint8Array[]): number {
    if (s.closed) return 0;
    if (s.hasOutbound) {
      const room = Math.min(s.sendWindow, this.sendWindow, this.peerMaxFrame);
      if (room <= 0) return 0;
      const header = batch.length;
      batch.push(EMPTY);
      let n = 0;
      while (s.hasOutbound && n < room) {
        const chunk = s.firstOutbound();
        const take = Math.min(chunk.length - s.sentOfFirst, room - n);
        // a chunk that goes whole goes as it is: a view of it would make JavaScriptCore give
        // each small array an ArrayBuffer of its own (a copy and an object per watch response)
        batch.push(take === chunk.length ? chunk : chunk.subarray(s.sentOfFirst, s.sentOfFirst + take));
        s.sentOfFirst += take;
        n += take;
        if (s.sentOfFirst === chunk.length) s.firstOutboundSent();
      }
      s.sendWindow -= n;
      this.sendWindow -= n;
      this.notReadingUntil = 0;
      // a response without trailers ends on its last DATA frame
      const last = !s.hasOutbound && s.ending !== undefined && s.ending.trailers === undefined;
      batch[header] = frameHeader(n, FrameType.DATA, last ? Flag.END_STREAM : 0, s.id);
      this.budgets.PING.refill(1);
      this.budgets.WINDOW_UPDATE.refill(2);
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
    this.closeStream(s, s.remoteClosed ? "ended" : "local");
  }

  private closeStream(s: H2Stream, how: Closed): void {
    if (!s.closed) {
      // request bytes nobody will read are given back to the connection
      this.creditConnection(s.unreadBytes);
      this.remember(s.id, how);
      if (this.working.has(s)) this.lingering++;
    }
    this.streams.delete(s.id);
    this.inReady.delete(s);
    s.close();
    this.armIdleTimer();
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
    clearInterval(this.stallTimer);
    this.clearIdleTimer();
    for (const s of this.streams.values()) s.close();
    this.streams.clear();
    this.ready = [];
    this.inReady.clear();
    for (const l of this.closeListeners.splice(0)) l();
  }
}

/** a place held in a batch for a frame header written once its length is known */
const EMPTY = Buffer.alloc(0);

/** Runs fn after `turns` more microtask turns (none: at once). */
function afterMicrotasks(turns: number, fn: () => void): void {
  if (turns <= 0) return fn();
  queueMicrotask(() => afterMicrotasks(turns - 1, fn));
}

/** A DATA or HEADERS payload without its padding (RFC 9113 §6.1). */
function unpad(flags: number, payload: Buffer): Buffer {
  if (!(flags & Flag.PADDED)) return payload;
  if (payload.length < 1) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "padded frame without its pad length");
  const pad = payload[0]!;
  if (pad >= payload.length) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame");
  return payload.subarray(1, payload.length - pad);
}
