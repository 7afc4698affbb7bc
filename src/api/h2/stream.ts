// One HTTP/2 stream as the server sees it: the request's headers and body coming in, the
// response's headers, body and trailers going out. The connection (connection.ts) moves
// the bytes and enforces flow control; a stream only queues and hands over.
import { droppedBytes } from "../../util/memory-pressure.ts";
import type { HeaderList } from "./hpack.ts";

/** What a stream asks of its connection. */
export interface StreamHost {
  sendHeaders(stream: H2Stream, headers: HeaderList, endStream: boolean): void;
  /** the stream has DATA or trailers to send */
  schedule(stream: H2Stream): void;
  /** the application consumed `bytes` of the request body: the peer may send that much more */
  consumed(stream: H2Stream, bytes: number): void;
  reset(stream: H2Stream, code: number): void;
  /** the subject CN of the client certificate the TLS handshake verified, if any */
  peerCommonName?(): string | undefined;
  /** whether the client showed lately that it does not read its responses (a stream of it reset for stalling) */
  notReading?(): boolean;
}

/** bytes of response body a stream queues before its writer waits for the peer to read */
const QUEUE_HIGH_WATER = 256 * 1024;
/**
 * why a stream's signal aborts: one shared reason, since abort() without one builds a
 * DOMException with a stack trace per stream (nothing reads the reason)
 */
const STREAM_CLOSED = new Error("the HTTP/2 stream closed");

/** what takeReceived gives when nothing came */
const NOTHING: readonly Uint8Array[] = [];

export class H2Stream {
  /** made on first use of `signal`: most unary calls never ask for it */
  private aborter: AbortController | undefined;

  // request body, as received and not yet consumed
  private inbound: Uint8Array[] = [];
  unreadBytes = 0;
  private inboundEnded = false;
  private wakeReader: (() => void) | undefined;

  /**
   * response body chunks queued for DATA frames, from `outboundHead` on (taken off by
   * moving the head: a watch stream queues thousands of small chunks, and shifting each
   * off the array's front moved all the others); `sentOfFirst` bytes of the first went out
   */
  private outbound: Array<Uint8Array | undefined> = [];
  private outboundHead = 0;
  sentOfFirst = 0;
  queuedBytes = 0;
  /** how much the peer lets this stream send (RFC 9113 §6.9) */
  sendWindow: number;
  /** how much the peer may still send us on this stream */
  recvWindow: number;
  /** bytes the application consumed that the peer has not been given back yet */
  recvConsumed = 0;
  /** the response ends after the queued body: with these trailers, or with END_STREAM on the last DATA */
  ending: { trailers: HeaderList | undefined } | undefined;
  headersSent = false;
  /** the peer sent END_STREAM */
  remoteClosed = false;
  /** we sent END_STREAM or a RST_STREAM */
  localClosed = false;
  /**
   * when the connection first saw the queued body move (or begin to wait): it looks every
   * so often (connection.ts resetStalled) and resets a stream stalled too long
   */
  progressAt = 0;
  /** the queued body moved or began to wait since the connection last looked (a flag, not a clock read for every frame) */
  moved = false;
  private roomWaiters: Array<() => void> = [];
  private closeListeners: Array<() => void> = [];
  private sentListeners: Array<(bytes: number) => void> = [];
  closed = false;

  constructor(
    readonly id: number,
    /** request headers by lowercase name; pseudo-headers included (`:path`, `:method`, …) */
    readonly headers: Record<string, string>,
    private readonly host: StreamHost,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** aborted when the stream closes: the peer reset it, the connection ended, or it finished */
  get signal(): AbortSignal {
    if (!this.aborter) {
      this.aborter = new AbortController();
      if (this.closed) this.aborter.abort(STREAM_CLOSED);
    }
    return this.aborter.signal;
  }

  get path(): string {
    return this.headers[":path"] ?? "";
  }

  get method(): string {
    return this.headers[":method"] ?? "";
  }

  /** the verified client certificate's subject CN (etcd's user when auth is on and no token is given) */
  get peerCommonName(): string | undefined {
    return this.host.peerCommonName?.();
  }

  /** the client showed lately that it does not read its responses (see the connection's notReading) */
  get clientNotReading(): boolean {
    return this.host.notReading?.() ?? false;
  }

  /**
   * The request body as it arrives. Each chunk taken gives the peer room for as many
   * bytes more, so a reader that stops holds back only its own stream.
   */
  async *body(): AsyncGenerator<Uint8Array> {
    for (;;) {
      for (const chunk of this.takeReceived()) yield chunk;
      if (this.bodyEnded) return;
      await this.arrival();
    }
  }

  /**
   * The part of the body received and not yet taken (each chunk taken gives the peer room
   * for as many bytes more); with `bodyEnded` and `arrival()`, the body without an async
   * generator, which a unary call reads on every request.
   */
  takeReceived(): readonly Uint8Array[] {
    if (this.inbound.length === 0) return NOTHING;
    const chunks = this.inbound;
    this.inbound = [];
    for (const chunk of chunks) {
      this.unreadBytes -= chunk.length;
      this.host.consumed(this, chunk.length);
    }
    return chunks;
  }

  /** whether no more of the body will come (the client ended it, or the stream closed) */
  get bodyEnded(): boolean {
    return this.inboundEnded || this.closed;
  }

  /** Resolves when more of the body arrives, or it ends. One reader at a time. */
  arrival(): Promise<void> {
    if (this.wakeReader) throw new Error("the request body is already being read");
    if (this.inbound.length > 0 || this.bodyEnded) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.wakeReader = () => {
        this.wakeReader = undefined;
        resolve();
      };
    });
  }

  /** Sends the response headers (before any body). */
  respond(headers: HeaderList): void {
    if (this.headersSent || this.localClosed) return;
    this.headersSent = true;
    this.host.sendHeaders(this, headers, false);
  }

  /** Queues body bytes; `room()` says when to write more. */
  write(data: Uint8Array): void {
    if (this.localClosed || this.ending || data.length === 0) return;
    if (this.queuedBytes === 0) this.moved = true;
    this.outbound.push(data);
    this.queuedBytes += data.length;
    this.host.schedule(this);
  }

  /** whether body chunks wait to be sent */
  get hasOutbound(): boolean {
    return this.outboundHead < this.outbound.length;
  }

  /** the first chunk not wholly sent (while hasOutbound) */
  firstOutbound(): Uint8Array {
    return this.outbound[this.outboundHead]!;
  }

  /** the first chunk went out, all of it */
  firstOutboundSent(): void {
    this.sentOfFirst = 0;
    // let go of it at once: a chunk can be a whole list's megabytes
    this.outbound[this.outboundHead] = undefined;
    if (++this.outboundHead === this.outbound.length) {
      this.outbound.length = 0;
      this.outboundHead = 0;
    } else if (this.outboundHead >= 1024 && this.outboundHead * 2 >= this.outbound.length) {
      // the places of the chunks sent go in bulk, each move of the rest paid for by as many taken off
      this.outbound.splice(0, this.outboundHead);
      this.outboundHead = 0;
    }
  }

  /** Whether the queued body is small enough to write more now (or the stream closed). */
  hasRoom(): boolean {
    return this.queuedBytes < QUEUE_HIGH_WATER || this.closed;
  }

  /** Resolves once the queued body is small enough to write more (or the stream closed). */
  room(): Promise<void> {
    if (this.hasRoom()) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Ends the response after the queued body, with trailers if given. */
  end(trailers?: HeaderList): void {
    if (this.localClosed || this.ending) return;
    if (!this.headersSent && trailers) {
      // a trailers-only response: one HEADERS frame with END_STREAM
      this.headersSent = true;
      this.ending = { trailers: undefined };
      this.host.sendHeaders(this, trailers, true);
      return;
    }
    this.ending = { trailers };
    this.host.schedule(this);
  }

  /** Ends the stream at once with RST_STREAM `code`. */
  reset(code: number): void {
    if (this.closed) return;
    this.host.reset(this, code);
  }

  /** Calls `listener` when the stream closes (at once if it has); the function returned takes it off. */
  onClose(listener: () => void): () => void {
    if (this.closed) {
      listener();
      return () => {};
    }
    this.closeListeners.push(listener);
    return () => {
      const i = this.closeListeners.indexOf(listener);
      if (i >= 0) this.closeListeners.splice(i, 1);
    };
  }

  /** `listener` hears of every piece of the body that went out, in bytes. */
  onSent(listener: (bytes: number) => void): void {
    if (!this.closed) this.sentListeners.push(listener);
  }

  // ---- called by the connection ----

  /** DATA from the peer */
  receive(data: Uint8Array): void {
    this.inbound.push(data);
    this.unreadBytes += data.length;
    this.wakeReader?.();
  }

  /** the peer sent END_STREAM */
  receiveEnd(): void {
    this.remoteClosed = true;
    this.inboundEnded = true;
    this.wakeReader?.();
  }

  /** `bytes` of the queued body went out */
  sent(bytes: number): void {
    this.queuedBytes -= bytes;
    this.moved = true;
    for (const l of this.sentListeners) l(bytes);
    if (this.queuedBytes < QUEUE_HIGH_WATER && this.roomWaiters.length) {
      for (const w of this.roomWaiters.splice(0)) w();
    }
  }

  /** The stream is over; everything waiting on it is released. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.localClosed = true;
    // a response dropped unsent is garbage now (counted, so that a pile of them is collected)
    if (this.queuedBytes > 0) droppedBytes(this.queuedBytes);
    this.outbound.length = 0;
    this.outboundHead = 0;
    this.queuedBytes = 0;
    this.inbound.length = 0;
    this.unreadBytes = 0;
    this.inboundEnded = true;
    this.wakeReader?.();
    for (const w of this.roomWaiters.splice(0)) w();
    this.sentListeners = [];
    this.aborter?.abort(STREAM_CLOSED);
    for (const l of this.closeListeners.splice(0)) l();
  }
}
