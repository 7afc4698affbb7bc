// etcdserverpb.Watch: one bidirectional stream carries many watchers. Requests are
// read concurrently with responses being written; responses leave in the order they
// were queued, so a created response precedes its events and a progress response
// follows every event it vouches for.
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { WatchCreateRequest, WatchRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { Watch } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { compareBytes, toKeyRange } from "../engine/keyrange.ts";
import type { Router } from "../router/router.ts";
import type { Event, KeyValue } from "../engine/types.ts";
import { type WatchHub, Watcher, type WatchResponseOut, type WatchSink } from "../engine/watch-hub.ts";
import { shuttingDown } from "./connections.ts";
import { toConnectError } from "./errors.ts";
import { header, type ServerIdentity } from "./header.ts";

const NOPUT = 0, NODELETE = 1;
/** a stream this far behind stops receiving live events until its client catches up */
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
          yield { ...r, header: header(id, r.header.revision) };
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

class WatchStream implements WatchSink {
  private readonly watchers = new Map<bigint, Watcher>();
  private readonly fragmenting = new Set<bigint>();
  private nextId = 0n;
  private queue: Array<WatchResponseOut & { fragment?: boolean }> = [];
  private queuedBytes = 0;
  private wake: (() => void) | undefined;
  private drainWaiters: Array<() => void> = [];
  private progressPending = false;
  private progressTimer: ReturnType<typeof setInterval> | undefined;
  private closed = false;

  constructor(
    private readonly store: Router,
    private readonly hub: WatchHub,
    private readonly maxRequestBytes: number,
  ) {}

  async consume(requests: AsyncIterable<WatchRequest>): Promise<void> {
    try {
      for await (const req of requests) {
        if (this.closed) return;
        const u = req.requestUnion;
        if (u.case === "createRequest") this.create(u.value);
        else if (u.case === "cancelRequest") this.cancel(u.value.watchId);
        else if (u.case === "progressRequest") this.requestProgress();
      }
    } catch {
      // the client went away; responses() ends with the call
    }
    // a half-closed stream keeps delivering events, as etcd's does
  }

  private create(c: WatchCreateRequest): void {
    const current = this.store.revision;
    // an empty key is the smallest key, "\0"
    const key = c.key.length === 0 ? new Uint8Array([0]) : c.key;
    const range = toKeyRange(key, c.rangeEnd);
    let watchId = c.watchId;
    let error: string | undefined;
    if (watchId === 0n) {
      while (this.watchers.has(this.nextId)) this.nextId++;
      watchId = this.nextId++;
    } else if (this.watchers.has(watchId)) {
      error = "mvcc: duplicate watch ID provided on the WatchStream";
    }
    if (!error && range.end !== undefined && c.rangeEnd.length > 0 && compareBytes(key, range.end) >= 0) {
      error = "mvcc: watcher range is empty";
    }
    if (error) {
      this.send({ header: { revision: current }, watchId: -1n, created: true, canceled: true, cancelReason: error, events: [] });
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

  private cancel(watchId: bigint): void {
    const w = this.watchers.get(watchId);
    if (!w) return;
    this.drop(w);
    this.send({ header: { revision: this.store.revision }, watchId, canceled: true, events: [] });
  }

  private drop(w: Watcher): void {
    this.hub.remove(w);
    this.watchers.delete(w.id);
    this.fragmenting.delete(w.id);
  }

  /**
   * Answers with the current revision once every watcher on the stream has been sent
   * every event up to it (until then the answer waits, so it never overtakes events).
   */
  private requestProgress(): void {
    if ([...this.watchers.values()].every((w) => this.hub.isSynced(w))) {
      this.send({ header: { revision: this.store.revision }, watchId: ALL_WATCHERS, events: [] });
      return;
    }
    this.progressPending = true;
    this.progressTimer ??= setInterval(() => {
      if (!this.progressPending) return;
      if ([...this.watchers.values()].every((w) => this.hub.isSynced(w))) {
        this.progressPending = false;
        clearInterval(this.progressTimer);
        this.progressTimer = undefined;
        this.send({ header: { revision: this.store.revision }, watchId: ALL_WATCHERS, events: [] });
      }
    }, 20);
  }

  send(resp: WatchResponseOut): void {
    if (this.closed) return;
    if (resp.canceled && resp.compactRevision) {
      const w = this.watchers.get(resp.watchId);
      if (w) this.drop(w);
    }
    if (this.fragmenting.has(resp.watchId) && resp.events.length > 1) {
      for (const part of fragments(resp, this.maxRequestBytes)) this.enqueue(part);
    } else {
      this.enqueue(resp);
    }
  }

  private enqueue(resp: WatchResponseOut & { fragment?: boolean }): void {
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
  async *responses(...signals: AbortSignal[]): AsyncGenerator<WatchResponseOut & { fragment?: boolean }> {
    const onAbort = () => this.wake?.();
    for (const s of signals) s.addEventListener("abort", onAbort);
    try {
      while (!signals.some((s) => s.aborted) && !this.closed) {
        const next = this.queue.shift();
        if (!next) {
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
    if (this.progressTimer) clearInterval(this.progressTimer);
    for (const d of this.drainWaiters.splice(0)) d();
  }
}

function kvSize(kv: KeyValue | undefined): number {
  return kv ? kv.key.length + kv.value.length + 40 : 0;
}

function eventSize(e: Event): number {
  return kvSize(e.kv) + kvSize(e.prevKv) + 8;
}

function responseSize(r: WatchResponseOut): number {
  let n = 64;
  for (const e of r.events) n += eventSize(e);
  return n;
}

/** Splits a large response as etcd does for watchers that asked for fragments. */
function* fragments(r: WatchResponseOut, max: number): Generator<WatchResponseOut & { fragment: boolean }> {
  if (responseSize(r) < max) return yield { ...r, fragment: false };
  let cur: Event[] = [];
  let size = 64;
  for (const e of r.events) {
    if (cur.length > 0 && size + eventSize(e) >= max) {
      yield { ...r, events: cur, fragment: true };
      cur = [];
      size = 64;
    }
    cur.push(e);
    size += eventSize(e);
  }
  yield { ...r, events: cur, fragment: false };
}

