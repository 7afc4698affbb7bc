// etcdserverpb.Watch: one bidirectional stream carries many watchers. Requests are
// read concurrently with responses being written; responses leave in the order they
// were queued, so a created response precedes its events and a progress response
// follows every event it vouches for. The keyspace places the watchers (in the
// databases, or relayed to an upstream etcd); this file is the stream: its queue,
// bounded in bytes, and responses split to the client's receive limit. Once auth is on,
// a watcher is created only for a caller who may read its range.
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { WatchCreateRequest, WatchRequest, WatchResponse } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { Watch } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Keyspace, WatchResponseOut, WatchSession, WatchStream } from "../keyspace/contract.ts";
import { EtcdError, errors } from "../mvcc/errors.ts";
import type { AuthStore } from "./auth-store.ts";
import { type Caller, caller } from "./caller.ts";
import { shuttingDown } from "./connections.ts";
import { toConnectError } from "./errors.ts";
import { header, type ServerIdentity } from "./header.ts";
import type { Rev } from "../mvcc/types.ts";
import { headerField, watchFrame, watchResponse } from "./watch-encoding.ts";
import { responseSize, splitResponse } from "./watch-split.ts";

/**
 * A stream this far behind stops receiving live events and history until its client
 * catches up: its queue holds at most about this plus one response from each sender.
 */
const CONGESTED_BYTES = 4 * 1024 * 1024;
const CONGESTED_RESPONSES = 256;

/**
 * What every Watch call shares, whether Connect serves it (watchService) or it is served
 * straight on its HTTP/2 stream (watch-call.ts): the keyspace, the limits, and one listener
 * on the server's shutdown for every stream (a signal keeps its listeners in a list, so one
 * each would make opening n streams cost O(n²)).
 */
export class WatchCalls {
  private readonly open = new Set<ClientStream>();
  /** the header of the revision last framed: a write to n watchers frames n responses of one revision */
  private framedHeader: { revision: Rev; field: Uint8Array } | undefined;

  constructor(
    private readonly keyspace: Keyspace,
    private readonly id: ServerIdentity,
    private readonly maxRequestBytes: number,
    readonly closing: AbortSignal,
    private readonly auth: AuthStore,
  ) {
    closing.addEventListener("abort", () => {
      for (const s of this.open) s.interrupt();
    }, { once: true });
  }

  /** a client stream of the caller, open until finish */
  start(who: Caller): ClientStream {
    const stream = new ClientStream(this.keyspace, this.maxRequestBytes, this.auth, who);
    this.open.add(stream);
    return stream;
  }

  finish(stream: ClientStream): void {
    this.open.delete(stream);
    stream.close();
  }

  /** the response as the client gets it, with this server's header */
  message(r: WatchResponseOut): WatchResponse {
    return watchResponse({ ...r, header: header(this.id, r.header.revision) });
  }

  /** the same as its gRPC frame */
  frame(r: WatchResponseOut): Uint8Array {
    const revision = r.header.revision;
    if (this.framedHeader?.revision !== revision) this.framedHeader = { revision, field: headerField(header(this.id, revision)) };
    return watchFrame(r, this.framedHeader.field);
  }
}

export function watchService(calls: WatchCalls): ServiceImpl<typeof Watch> {
  return {
    async *watch(requests: AsyncIterable<WatchRequest>, ctx: HandlerContext) {
      const stream = calls.start(caller(ctx));
      void stream.consume(requests);
      try {
        for await (const r of stream.responses(ctx.signal, calls.closing)) yield calls.message(r);
      } catch (err) {
        throw toConnectError(err);
      } finally {
        calls.finish(stream);
      }
      // the client reconnects, to another strata if it knows one
      if (calls.closing.aborted) throw shuttingDown();
    },
  };
}

/** Where a stream served on strata's own path (watch-call.ts) writes its responses. */
export interface ResponseWriter {
  /** sends the response; false once the transport takes no more until room() resolves */
  write(r: WatchResponseOut): boolean;
  room(): Promise<void>;
}

export class ClientStream implements WatchStream {
  private readonly session: WatchSession;
  private queue: WatchResponseOut[] = [];
  private queuedBytes = 0;
  private wake: (() => void) | undefined;
  /**
   * set while deliver waits for responses with room to write them: a response queued then
   * goes straight to the client, with no queue and no task switch on the way
   */
  private direct: ResponseWriter | undefined;
  private drainWaiters: Array<() => void> = [];
  private closed = false;
  private failure: ConnectError | undefined;

  constructor(
    private readonly keyspace: Keyspace,
    private readonly maxRequestBytes: number,
    private readonly auth: AuthStore,
    /** who may watch what watchRefusal says */
    private readonly who: Caller,
  ) {
    this.session = keyspace.watch(this);
  }

  async consume(requests: AsyncIterable<WatchRequest>): Promise<void> {
    try {
      for await (const req of requests) if (!(await this.take(req))) return;
    } catch (err) {
      this.requestsFailed(err);
    }
    // a half-closed stream keeps delivering events, as etcd's does
  }

  /** Carries out one request; false once the stream is closed (the rest are not read). */
  async take(req: WatchRequest): Promise<boolean> {
    // while the client reads no responses its requests wait (as etcd's do), so the
    // answers they would queue cannot grow the queue without bound
    if (this.congested()) await this.drained();
    if (this.closed) return false;
    const u = req.requestUnion;
    if (u.case === "createRequest") this.create(u.value);
    else if (u.case === "cancelRequest") this.session.cancel(u.value.watchId);
    else if (u.case === "progressRequest") this.session.requestProgress();
    return true;
  }

  /** The requests ended with `err`. */
  requestsFailed(err: unknown): void {
    // a request that is not a WatchRequest ends the stream with grpc-go's error, as
    // etcd's does; any other failure means the client went away and the call ends
    const parse = err instanceof ConnectError && err.rawMessage.match(/^parse binary: (.*)$/);
    if (parse) this.fail(unparsable(parse[1]!));
    // so does one larger than the server takes, or one it cannot read
    else if (err instanceof ConnectError && (err.code === Code.ResourceExhausted || err.code === Code.Internal)) this.fail(err);
  }

  /** A watcher, once the caller may read its range; refused as etcd refuses it, with watch id -1. */
  private create(c: WatchCreateRequest): void {
    const reason = watchRefusal(this.auth, this.who, c);
    if (reason === undefined) return this.session.create(c);
    this.enqueue({ header: { revision: this.keyspace.latestRevision }, watchId: -1n, created: true, canceled: true, cancelReason: reason, events: [] });
  }

  /** Ends the stream with `err` once the responses already queued are sent. */
  private fail(err: ConnectError): void {
    this.failure = err;
    this.wake?.();
  }

  send(resp: WatchResponseOut, fragmentable: boolean): void {
    if (this.closed) return;
    // a fragment an upstream etcd made passes as it is
    if (resp.fragment) return this.enqueue(resp);
    const size = responseSize(resp);
    if (size < this.maxRequestBytes) return this.enqueue(resp, size);
    for (const part of splitResponse(resp, this.maxRequestBytes, fragmentable)) this.enqueue(part);
  }

  /** watch ids are the session's business */
  forget(): void {}

  private enqueue(resp: WatchResponseOut, size = responseSize(resp)): void {
    if (this.direct && this.queue.length === 0) {
      // the writer full, deliver waits for room and takes the queue from there
      if (!this.direct.write(resp)) {
        this.direct = undefined;
        this.wake?.();
      }
      return;
    }
    this.queue.push(resp);
    this.queuedBytes += size;
    this.wake?.();
  }

  /** `r` left the queue */
  private dequeued(r: WatchResponseOut): void {
    this.queuedBytes -= responseSize(r);
    if (!this.congested() && this.drainWaiters.length) {
      for (const d of this.drainWaiters.splice(0)) d();
    }
  }

  congested(): boolean {
    return this.queuedBytes > CONGESTED_BYTES || this.queue.length > CONGESTED_RESPONSES;
  }

  drained(): Promise<void> {
    if (!this.congested() || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** wakes the stream's responses to look at its signals again */
  interrupt(): void {
    this.wake?.();
  }

  /**
   * Responses in order until the stream closes, its call ends or the server shuts down
   * (whose listener calls interrupt).
   */
  async *responses(call: AbortSignal, shutdown: AbortSignal): AsyncGenerator<WatchResponseOut> {
    const onAbort = () => this.interrupt();
    call.addEventListener("abort", onAbort);
    try {
      while (!call.aborted && !shutdown.aborted && !this.closed) {
        const next = this.queue.shift();
        if (!next) {
          if (this.failure) throw this.failure;
          await new Promise<void>((resolve) => (this.wake = resolve));
          this.wake = undefined;
          continue;
        }
        this.dequeued(next);
        yield next;
      }
    } finally {
      call.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Writes the responses in order until the stream closes, its call ends or the server
   * shuts down, as responses() yields them, but without a task switch per response: the
   * queue is written out while the writer has room, and while the queue is empty the
   * writer takes each response as it is queued (enqueue).
   */
  async deliver(writer: ResponseWriter, call: AbortSignal, shutdown: AbortSignal): Promise<void> {
    const onAbort = () => this.interrupt();
    call.addEventListener("abort", onAbort);
    try {
      let room = true;
      while (!call.aborted && !shutdown.aborted && !this.closed) {
        if (!room) {
          await writer.room();
          room = true;
          continue;
        }
        const next = this.queue.shift();
        if (next) {
          this.dequeued(next);
          room = writer.write(next);
          continue;
        }
        if (this.failure) throw this.failure;
        this.direct = writer;
        await new Promise<void>((resolve) => (this.wake = resolve));
        // enqueue takes the writer back when it fills
        room = this.direct !== undefined;
        this.direct = undefined;
        this.wake = undefined;
      }
    } finally {
      this.direct = undefined;
      call.removeEventListener("abort", onAbort);
    }
  }

  close(): void {
    this.closed = true;
    this.direct = undefined;
    this.session.close();
    for (const d of this.drainWaiters.splice(0)) d();
  }
}

/** a request that is not a WatchRequest, as grpc-go words it */
export function unparsable(why: string): ConnectError {
  return new ConnectError(`grpc: failed to unmarshal the received message ${why}`, Code.Internal);
}

/**
 * Whether the caller may watch: read permission on the range, checked when the watcher is
 * created and not again (etcd 3.4's rule: a watch already open keeps its events after a
 * permission is revoked). The reason reads as etcd words it, a gRPC status printed.
 */
function watchRefusal(auth: AuthStore, who: Caller, c: WatchCreateRequest): string | undefined {
  if (!auth.enabled && who.token === undefined) return undefined;
  try {
    // an empty key is "\0", the smallest key, as etcd takes it; a range_end of "\0" is every key from there
    const key = c.key.length === 0 ? new Uint8Array([0]) : c.key;
    auth.checkRange(auth.identify(who), key, c.rangeEnd);
    return undefined;
  } catch (err) {
    if (!(err instanceof EtcdError)) throw err;
    // etcd answers a refusal it has no name for as permission denied
    const named = ["Unauthenticated", "InvalidArgument"].includes(err.code) ? err : errors.permissionDenied();
    return `rpc error: code = ${named.code} desc = ${named.message}`;
  }
}
