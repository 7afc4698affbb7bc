// The watchers one client stream places on one upstream etcd share one watch stream to
// it. Creates, cancels and progress requests go up as the client sent them, with the
// client's watch ids; etcd's responses come back under them (etcd answers creates in
// the order they were sent, so its ids map to the client's even where it chose its own). While the client reads slowly,
// nothing more is read from etcd, which holds the events back as it does for any slow
// watcher. If the stream to etcd fails, each watcher on it is canceled with the reason.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  type WatchCreateRequest,
  type WatchRequest,
  WatchRequestSchema,
  type WatchResponse,
} from "../../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { WatchResponseOut, WatchSession, WatchStream } from "../../keyspace/contract.ts";
import type { Event, Rev } from "../../mvcc/types.ts";
import { RequestQueue } from "./queue.ts";
import type { Upstream } from "./upstream.ts";

/** the watch_id etcd gives responses that concern no single watcher */
const NO_WATCHER = -1n;

export class WatchRelay implements WatchSession {
  closed = false;
  private readonly requests = new RequestQueue<WatchRequest>();
  private readonly abort = new AbortController();
  /** etcd's watch id → the client's */
  private readonly toClient = new Map<bigint, bigint>();
  private readonly toEtcd = new Map<bigint, bigint>();
  /** client ids whose creates etcd has not answered yet, in the order they were sent */
  private readonly creating: bigint[] = [];
  private readonly cancelWhenCreated = new Set<bigint>();
  /** for each progress request sent: whether the answer goes to each watcher (the stream also has other watchers) */
  private readonly progressEach: boolean[] = [];
  private revision: Rev = 0n;

  constructor(
    private readonly upstream: Upstream,
    private readonly stream: WatchStream,
  ) {
    void this.run();
  }

  create(c: WatchCreateRequest, clientId = c.watchId): void {
    const { $typeName: _, ...fields } = c;
    this.creating.push(clientId);
    // etcd keeps the id when it can (3.4 and later); the answer is mapped either way
    this.send({ case: "createRequest", value: { ...fields, watchId: clientId } });
  }

  cancel(clientId: bigint): void {
    const id = this.toEtcd.get(clientId);
    if (id !== undefined) this.send({ case: "cancelRequest", value: { watchId: id } });
    else if (this.creating.includes(clientId)) this.cancelWhenCreated.add(clientId);
  }

  /** Asks etcd for progress; each: answer per watcher (the client's stream mixes backends). */
  requestProgress(each = false): void {
    this.progressEach.push(each);
    this.send({ case: "progressRequest", value: {} });
  }

  close(): void {
    this.closed = true;
    this.requests.end();
    this.abort.abort();
  }

  private send(u: MessageInitShape<typeof WatchRequestSchema>["requestUnion"]): void {
    this.requests.push(create(WatchRequestSchema, { requestUnion: u }));
  }

  private async run(): Promise<void> {
    try {
      for await (const r of this.upstream.watch(this.requests, this.abort.signal)) {
        if (this.closed) return;
        this.handle(r);
        // the client's pace sets etcd's: read on once its queue has room
        if (this.stream.congested()) await this.stream.drained();
      }
    } catch (err) {
      if (!this.closed) this.fail((err as Error).message);
    }
  }

  private handle(r: WatchResponse): void {
    if (r.header) this.revision = r.header.revision;
    const header = { revision: this.revision };
    if (r.created) {
      const clientId = this.creating.shift();
      if (clientId === undefined) return;
      if (r.canceled || r.watchId === NO_WATCHER) {
        // refused: a duplicate id leaves the watcher that holds it alone
        if (!this.toEtcd.has(clientId)) this.stream.forget(clientId);
        this.deliver({ header, watchId: r.watchId, created: true, canceled: true, cancelReason: r.cancelReason, events: [] });
        return;
      }
      this.toClient.set(r.watchId, clientId);
      this.toEtcd.set(clientId, r.watchId);
      this.deliver({ header, watchId: clientId, created: true, events: [] });
      if (this.cancelWhenCreated.delete(clientId)) this.cancel(clientId);
      return;
    }
    if (r.watchId === NO_WATCHER) {
      // the answer to a progress request
      if (this.progressEach.shift()) {
        for (const clientId of this.toClient.values()) this.deliver({ header, watchId: clientId, events: [] });
      } else {
        this.deliver({ header, watchId: NO_WATCHER, events: [] });
      }
      return;
    }
    const clientId = this.toClient.get(r.watchId);
    if (clientId === undefined) return;
    if (r.canceled) {
      this.toClient.delete(r.watchId);
      this.toEtcd.delete(clientId);
      this.stream.forget(clientId);
    }
    this.deliver({
      header,
      watchId: clientId,
      canceled: r.canceled,
      compactRevision: r.compactRevision,
      cancelReason: r.cancelReason,
      fragment: r.fragment,
      events: r.events as unknown as Event[],
    });
  }

  /** etcd's fragments pass as they are; its whole responses are split between revisions like strata's own */
  private deliver(resp: WatchResponseOut): void {
    this.stream.send(resp, false);
  }

  /** The stream to etcd is gone: every watcher on it is canceled, saying why. */
  private fail(reason: string): void {
    this.close();
    const ids = [...this.toClient.values(), ...this.creating];
    this.toClient.clear();
    this.toEtcd.clear();
    this.creating.length = 0;
    for (const clientId of ids) {
      this.stream.forget(clientId);
      this.deliver({ header: { revision: this.revision }, watchId: clientId, canceled: true, cancelReason: reason, events: [] });
    }
  }
}
