// The watchers of one client stream, each placed in the keyspace its range routes to (the
// databases, or an upstream etcd that gets one watch stream per client stream). Watch ids
// are the client stream's: this session hands them out and refuses one another keyspace
// holds; within one keyspace, that keyspace refuses duplicates itself (an upstream etcd
// answers with its own revision). Revisions of different keyspaces cannot share one
// progress answer, so a stream with watchers in several gets one answer per watcher.
// Watchers with label/field selectors are filtered here, above both kinds of keyspace
// (selected-watch.ts), custom resources' fields with the CRDs known when the watcher was
// placed or later (crd-registry.ts).
import type { WatchCreateRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { toKeyRange } from "../mvcc/keyrange.ts";
import type { KeyRange, Rev } from "../mvcc/types.ts";
import { namesOtherFields, parseSelection, type Selection, SelectorError } from "../selectors/index.ts";
import type { Keyspace, WatchResponseOut, WatchSession, WatchStream } from "./contract.ts";
import type { CustomFieldSource } from "./crd-registry.ts";
import { placedRequest, type SelectedWatcher, selectedResponse } from "./selected-watch.ts";

/** what the session asks of the dispatcher */
export interface WatchRoutes {
  readonly latestRevision: Rev;
  /** the keyspace a watch over the range goes to; throws when it spans keyspaces */
  memberFor(ranges: KeyRange[], what: string): Keyspace;
  /** where a progress request goes when the stream has no watcher */
  readonly home: Keyspace;
  /** the CRDs' selectable fields; without them custom resources' fields are unknown */
  readonly customFields?: CustomFieldSource;
}

/** how long a new selector watcher's CRD registry is helped to catch up (its events meanwhile: the superset) */
const CATCH_UP_MS = 5000;

export class DispatchedWatch implements WatchSession {
  closed = false;
  /** the session holding each watch id of the stream */
  private readonly owner = new Map<bigint, WatchSession>();
  /** the watchers with selectors, by watch id (made on first use: most streams have none) */
  private selected: Map<bigint, SelectedWatcher> | undefined;
  private readonly sessions = new Map<Keyspace, WatchSession>();
  private nextId = 0n;

  constructor(
    private readonly routes: WatchRoutes,
    readonly stream: WatchStream,
  ) {}

  create(c: WatchCreateRequest): void {
    const current = this.routes.latestRevision;
    // an empty key is the smallest key, "\0"
    const key = c.key.length === 0 ? new Uint8Array([0]) : c.key;
    let member: Keyspace | undefined;
    let selection: Selection | undefined;
    let error: string | undefined;
    try {
      member = this.routes.memberFor([toKeyRange(key, c.rangeEnd)], "watch");
      // a malformed selector refuses the watcher alone, as etcd refuses one it cannot place:
      // the stream carries the client's other watchers
      selection = parseSelection(c.labelSelector, c.fieldSelector);
    } catch (err) {
      error = err instanceof SelectorError ? `strata: InvalidArgument: ${err.message}` : (err as Error).message;
    }
    const existing = member && this.sessions.get(member);
    let watchId = c.watchId;
    if (watchId === 0n) {
      while (this.owner.has(this.nextId)) this.nextId++;
      watchId = this.nextId++;
    } else if (!error && this.owner.has(watchId) && this.owner.get(watchId) !== existing) {
      error = "mvcc: duplicate watch ID provided on the WatchStream";
    }
    if (error) {
      this.stream.send({ header: { revision: current }, watchId: -1n, created: true, canceled: true, cancelReason: error, events: [] }, false);
      return;
    }
    const session = this.sessionOf(member!);
    // a duplicate id stays with the watcher holding it (its keyspace refuses the new one)
    if (!this.owner.has(watchId)) {
      this.owner.set(watchId, session);
      if (selection) (this.selected ??= new Map()).set(watchId, { selection, prevKv: c.prevKv, fragment: c.fragment, custom: this.customFields(selection) });
      else this.selected?.delete(watchId);
    }
    session.create(selection ? placedRequest(c) : c, watchId);
  }

  /**
   * The CRD lookup a selector watcher uses: the CRDs as of now (the apiserver checked the
   * selector against them) or newer. Until the registry has them, its fields are unknown;
   * asking now brings it there before the first events, typically.
   */
  private customFields(selection: Selection): (() => ReturnType<CustomFieldSource["lookup"]>) | undefined {
    const source = this.routes.customFields;
    if (!source || !namesOtherFields(selection)) return undefined;
    const mark = source.mark();
    void source.ready(mark, CATCH_UP_MS);
    return () => source.lookup(mark);
  }

  /** the stream's session in a keyspace, opened on first use (and again after its connection failed) */
  private sessionOf(k: Keyspace): WatchSession {
    const s = this.sessions.get(k);
    if (s && !s.closed) return s;
    const through = new SessionStream(this);
    const opened = (through.session = k.watch(through));
    this.sessions.set(k, opened);
    return opened;
  }

  /** a response of `session`'s, its selection applied */
  sendFrom(session: WatchSession, resp: WatchResponseOut, fragmentable: boolean): boolean | void {
    const w = this.selected?.get(resp.watchId);
    if (!w || this.owner.get(resp.watchId) !== session) return this.stream.send(resp, fragmentable);
    const out = selectedResponse(w, resp);
    if (!out) return false;
    this.stream.send(out, w.fragment);
  }

  /** `session` holds watch id `id` no longer */
  forgetFrom(session: WatchSession, id: bigint): void {
    if (this.owner.get(id) !== session) return;
    this.owner.delete(id);
    this.selected?.delete(id);
  }

  cancel(watchId: bigint): void {
    this.owner.get(watchId)?.cancel(watchId);
  }

  requestProgress(): void {
    const holding = new Set(this.owner.values());
    if (holding.size === 0) return this.sessionOf(this.routes.home).requestProgress(false);
    for (const s of holding) s.requestProgress(holding.size > 1);
  }

  close(): void {
    this.closed = true;
    for (const s of this.sessions.values()) s.close();
  }
}

/** The client stream as the session of one keyspace writes to it: an object of its own, not four closures per stream. */
class SessionStream implements WatchStream {
  /** set as soon as the keyspace opened it, before any response */
  session!: WatchSession;
  /** strata's own watchers (a TopologyConfig follower's) are not counted as clients' */
  readonly own: boolean | undefined;

  constructor(private readonly watch: DispatchedWatch) {
    this.own = watch.stream.own;
  }

  send(resp: WatchResponseOut, fragmentable: boolean): boolean | void {
    return this.watch.sendFrom(this.session, resp, fragmentable);
  }

  forget(id: bigint): void {
    this.watch.forgetFrom(this.session, id);
  }

  congested(): boolean {
    return this.watch.stream.congested();
  }

  drained(): Promise<void> {
    return this.watch.stream.drained();
  }
}
