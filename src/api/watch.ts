// etcdserverpb.Watch: one bidirectional stream carries many watchers. Requests are
// read concurrently with responses being written; responses leave in the order they
// were queued, so a created response precedes its events and a progress response
// follows every event it vouches for. Watchers on an upstream etcd are relayed to it
// (one stream to each upstream per client stream); a watcher spanning an upstream and
// another backend is refused.
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { Upstream } from "../backends/etcd/upstream.ts";
import { type RelaySink, WatchRelay } from "../backends/etcd/watch-relay.ts";
import type { WatchCreateRequest, WatchRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { Watch } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { compareBytes, toKeyRange } from "../mvcc/keyrange.ts";
import type { Router } from "../router/router.ts";
import { type WatchHub, Watcher, type WatchResponseOut, type WatchSink } from "../keyspace/watch-hub.ts";
import { shuttingDown } from "./connections.ts";
import { toConnectError } from "./errors.ts";
import { header, type ServerIdentity } from "./header.ts";
import { watchResponse } from "./watch-encoding.ts";
import { type Queued, responseSize, splitResponse } from "./watch-split.ts";

const NOPUT = 0, NODELETE = 1;
/**
 * A stream this far behind stops receiving live events and history until its client
 * catches up: its queue holds at most about this plus one response from each sender.
 */
const CONGESTED_BYTES = 4 * 1024 * 1024;
const CONGESTED_RESPONSES = 256;
/** watch_id of a progress response that concerns every watcher on the stream */
const ALL_WATCHERS = -1n;

export function watchService(
  store: Router,
  hub: WatchHub,
  id: ServerIdentity,
  maxRequestBytes: number,
  closing: AbortSignal,
): ServiceImpl<typeof Watch> {
  return {
    async *watch(requests: AsyncIterable<WatchRequest>, ctx: HandlerContext) {
      const stream = new WatchStream(store, hub, maxRequestBytes);
      void stream.consume(requests);
      try {
        for await (const r of stream.responses(ctx.signal, closing)) {
          yield watchResponse({ ...r, header: header(id, r.header.revision) });
        }
      } catch (err) {
        throw toConnectError(err);
      } finally {
        stream.close();
      }
      // the client reconnects, to another strata if it knows one
      if (closing.aborted) throw shuttingDown();
    },
  };
}

class WatchStream implements WatchSink, RelaySink {
  private readonly watchers = new Map<bigint, Watcher>();
  /** watchers on upstream etcds, by client watch id */
  private readonly relayed = new Map<bigint, WatchRelay>();
  private readonly relays = new Map<Upstream, WatchRelay>();
  private readonly fragmenting = new Set<bigint>();
  private nextId = 0n;
  private queue: Queued[] = [];
  private queuedBytes = 0;
  private wake: (() => void) | undefined;
  private drainWaiters: Array<() => void> = [];
  /** a progress request waits for local watchers to catch up; "each": answered per watcher */
  private progressPending: "all" | "each" | undefined;
  private progressTarget = 0n;
  private progressTimer: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  private failure: ConnectError | undefined;

  constructor(
    private readonly store: Router,
    private readonly hub: WatchHub,
    private readonly maxRequestBytes: number,
  ) {}

  async consume(requests: AsyncIterable<WatchRequest>): Promise<void> {
    try {
      for await (const req of requests) {
        // while the client reads no responses its requests wait (as etcd's do), so the
        // answers they would queue cannot grow the queue without bound
        if (this.congested()) await this.drained();
        if (this.closed) return;
        const u = req.requestUnion;
        if (u.case === "createRequest") this.create(u.value);
        else if (u.case === "cancelRequest") this.cancel(u.value.watchId);
        else if (u.case === "progressRequest") this.requestProgress();
      }
    } catch (err) {
      // a request that is not a WatchRequest ends the stream with grpc-go's error, as
      // etcd's does; any other failure means the client went away and the call ends
      const parse = err instanceof ConnectError && err.rawMessage.match(/^parse binary: (.*)$/);
      if (parse) this.fail(new ConnectError(`grpc: failed to unmarshal the received message ${parse[1]}`, Code.Internal));
    }
    // a half-closed stream keeps delivering events, as etcd's does
  }

  /** Ends the stream with `err` once the responses already queued are sent. */
  private fail(err: ConnectError): void {
    this.failure = err;
    this.wake?.();
  }

  private create(c: WatchCreateRequest): void {
    // a watch without a start revision begins after every write already acknowledged
    const current = this.store.latestRevision;
    // an empty key is the smallest key, "\0"
    const key = c.key.length === 0 ? new Uint8Array([0]) : c.key;
    const range = toKeyRange(key, c.rangeEnd);
    let error: string | undefined;
    let upstream: Upstream | undefined;
    try {
      upstream = this.store.upstreamFor([range], "watch");
    } catch (err) {
      error = (err as Error).message;
    }
    // etcd itself refuses what concerns its own watchers (an id taken there, an empty
    // range), so its answer carries its revision
    const relay = upstream && this.relays.get(upstream);
    const taken = (id: bigint) => this.watchers.has(id) || (this.relayed.has(id) && this.relayed.get(id) !== relay);
    let watchId = c.watchId;
    if (watchId === 0n) {
      while (this.watchers.has(this.nextId) || this.relayed.has(this.nextId)) this.nextId++;
      watchId = this.nextId++;
    } else if (!error && taken(watchId)) {
      error = "mvcc: duplicate watch ID provided on the WatchStream";
    }
    if (!error && !upstream && range.end !== undefined && c.rangeEnd.length > 0 && compareBytes(key, range.end) >= 0) {
      error = "mvcc: watcher range is empty";
    }
    if (error) {
      this.send({ header: { revision: current }, watchId: -1n, created: true, canceled: true, cancelReason: error, events: [] });
      return;
    }
    if (upstream) {
      const to = this.relayTo(upstream);
      // a duplicate id stays with the watcher holding it (etcd refuses the new one)
      if (!this.relayed.has(watchId)) this.relayed.set(watchId, to);
      to.create(watchId, c);
      return;
    }
    const start = c.startRevision === 0n ? current + 1n : c.startRevision;
    const w = new Watcher(watchId, range, start, {
      prevKv: c.prevKv,
      noPut: c.filters.includes(NOPUT),
      noDelete: c.filters.includes(NODELETE),
      progressNotify: c.progressNotify,
    }, this);
    this.watchers.set(watchId, w);
    if (c.fragment) this.fragmenting.add(watchId);
    this.send({ header: { revision: current }, watchId, created: true, events: [] });
    this.hub.add(w);
  }

  private relayTo(u: Upstream): WatchRelay {
    let r = this.relays.get(u);
    if (!r || r.closed) this.relays.set(u, (r = new WatchRelay(u, this)));
    return r;
  }

  deliver(resp: Queued): void {
    if (this.closed) return;
    // etcd sends a lagging watcher up to 1,000 revisions at once: split between them like
    // our own, so they stay below the client's receive limit; etcd's fragments pass as they are
    if (resp.fragment) return this.enqueue(resp);
    for (const part of splitResponse(resp, this.maxRequestBytes, false)) this.enqueue(part);
  }

  forget(watchId: bigint): void {
    this.relayed.delete(watchId);
  }

  private cancel(watchId: bigint): void {
    const r = this.relayed.get(watchId);
    if (r) return r.cancel(watchId);
    const w = this.watchers.get(watchId);
    if (!w) return;
    this.drop(w);
    this.send({ header: { revision: this.store.latestRevision }, watchId, canceled: true, events: [] });
  }

  private drop(w: Watcher): void {
    this.hub.remove(w);
    this.watchers.delete(w.id);
    this.fragmenting.delete(w.id);
  }

  /**
   * Answers with the current revision once every watcher on the stream has been sent
   * every event up to it (until then the answer waits, so it never overtakes events).
   * Watchers on an upstream get etcd's answer. Revisions of different backends cannot
   * share one answer, so a stream mixing them gets one answer per watcher.
   */
  private requestProgress(): void {
    const relays = new Set(this.relayed.values());
    const upstream = this.store.defaultUpstream;
    if (relays.size === 0 && this.watchers.size === 0 && upstream) return this.relayTo(upstream).requestProgress(false);
    const each = relays.size + (this.watchers.size > 0 ? 1 : 0) > 1;
    for (const r of relays) r.requestProgress(each);
    if (relays.size > 0 && this.watchers.size === 0) return;
    this.progressPending = each ? "each" : "all";
    this.progressTarget = this.store.latestRevision;
    if (this.answerProgress()) return;
    this.progressTimer ??= setInterval(() => {
      if (this.progressPending && this.answerProgress()) {
        clearInterval(this.progressTimer);
        this.progressTimer = undefined;
      }
    }, 20);
  }

  /**
   * Sends the pending progress answer once every local watcher is synced and the merged
   * order has reached the newest write acknowledged when it was asked for.
   */
  private answerProgress(): boolean {
    if (this.store.revision < this.progressTarget) return false;
    if (![...this.watchers.values()].every((w) => this.hub.isSynced(w))) return false;
    const header = { revision: this.store.revision };
    if (this.progressPending === "each") for (const w of this.watchers.values()) this.send({ header, watchId: w.id, events: [] });
    else this.send({ header, watchId: ALL_WATCHERS, events: [] });
    this.progressPending = undefined;
    return true;
  }

  send(resp: WatchResponseOut): void {
    if (this.closed) return;
    if (resp.canceled && resp.compactRevision) {
      const w = this.watchers.get(resp.watchId);
      if (w) this.drop(w);
    }
    for (const part of splitResponse(resp, this.maxRequestBytes, this.fragmenting.has(resp.watchId))) this.enqueue(part);
  }

  private enqueue(resp: Queued): void {
    this.queue.push(resp);
    this.queuedBytes += responseSize(resp);
    this.wake?.();
  }

  congested(): boolean {
    return this.queuedBytes > CONGESTED_BYTES || this.queue.length > CONGESTED_RESPONSES;
  }

  drained(): Promise<void> {
    if (!this.congested() || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Responses in order until the stream closes or one of the signals (call ended, shutdown) aborts. */
  async *responses(...signals: AbortSignal[]): AsyncGenerator<Queued> {
    const onAbort = () => this.wake?.();
    for (const s of signals) s.addEventListener("abort", onAbort);
    try {
      while (!signals.some((s) => s.aborted) && !this.closed) {
        const next = this.queue.shift();
        if (!next) {
          if (this.failure) throw this.failure;
          await new Promise<void>((resolve) => (this.wake = resolve));
          this.wake = undefined;
          continue;
        }
        this.queuedBytes -= responseSize(next);
        if (!this.congested() && this.drainWaiters.length) {
          for (const d of this.drainWaiters.splice(0)) d();
        }
        yield next;
      }
    } finally {
      for (const s of signals) s.removeEventListener("abort", onAbort);
    }
  }

  close(): void {
    this.closed = true;
    for (const w of this.watchers.values()) this.hub.remove(w);
    this.watchers.clear();
    for (const r of this.relays.values()) r.close();
    if (this.progressTimer) clearInterval(this.progressTimer);
    for (const d of this.drainWaiters.splice(0)) d();
  }
}
