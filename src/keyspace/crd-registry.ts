// The CRDs of the keyspace, for custom resources' field selectors: read from the keyspace
// itself (PREFIX apiextensions.k8s.io/customresourcedefinitions/, in whichever backend
// that routes to, an upstream etcd too), then kept current by a watch on that prefix.
//
// A selector may use a CRD only once the registry holds every CRD change made before its
// request arrived: the apiserver checked the selector against a CRD state at least that
// new. A request marks the CRD keyspace's newest revision; a registry behind the mark asks
// its watch for progress (an answer never overtakes events, so it proves every change up to
// its revision was applied). Until it is there — and while it loads, or reloads after its
// watch failed — custom resources' fields are unknown and their objects kept: the superset.
import { create } from "@bufbuild/protobuf";
import { WatchCreateRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { prefixEnd } from "../mvcc/keyrange.ts";
import { DELETE, type KeyRange, type Rev } from "../mvcc/types.ts";
import type { Log } from "../util/log.ts";
import { type CrdFields, type CustomField, type CustomFieldLookup, decodeCrd } from "../selectors/index.ts";
import type { Keyspace, WatchResponseOut, WatchSession } from "./contract.ts";
import { readAtOneRevision } from "./read-prefix.ts";

/** CRDs read per page while loading (each some KiB, a big one a few hundred) */
const PAGE = 64n;
/** the registry's one watcher on its session */
const WATCH_ID = 1n;
/** a progress request unanswered this long is asked again (its answer may have been lost with a failed watch) */
const REASK_MS = 1000;
const RETRY_MIN_MS = 200, RETRY_MAX_MS = 10_000;

/** What selector ranges and watchers ask of the CRDs. */
export interface CustomFieldSource {
  /** the CRD keyspace's newest revision now: a request needs every CRD change up to it */
  mark(): Rev;
  /** the lookup, when every CRD change up to `mark` is known; else undefined (the superset) */
  lookup(mark: Rev): CustomFieldLookup | undefined;
  /** the lookup once every CRD change up to `mark` is known; undefined after `waitMs` without */
  ready(mark: Rev, waitMs: number): Promise<CustomFieldLookup | undefined>;
}

export class CrdRegistry implements CustomFieldSource {
  /** the CRDs by key */
  private crds = new Map<string, CrdFields>();
  /** "group/kind" → version → field name → field; null when two CRDs claim the kind */
  private index = new Map<string, Map<string, Map<string, CustomField>> | null>();
  /** every CRD change up to this revision is applied; -1: not loaded */
  private known: Rev = -1n;
  private session: WatchSession | undefined;
  /** which load the session belongs to: responses of an earlier one are dropped */
  private generation = 0;
  private running = false;
  private retryMs = RETRY_MIN_MS;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly waiters = new Set<{ mark: Rev; done: () => void }>();
  /** when progress was last asked for, and the mark it covers */
  private asked: { at: number; mark: Rev } | undefined;
  /** the CRDs' keys */
  readonly keys: KeyRange;

  constructor(
    /** the keyspace the CRDs' keys route to */
    private readonly keyspaceOf: (keys: KeyRange) => Keyspace,
    keyPrefix: string,
    private readonly log?: Log,
  ) {
    const prefix = new TextEncoder().encode(`${keyPrefix.endsWith("/") ? keyPrefix : `${keyPrefix}/`}apiextensions.k8s.io/customresourcedefinitions/`);
    this.keys = { start: prefix, end: prefixEnd(prefix) };
  }

  /** the revision up to which every CRD change is known; -1 while not loaded */
  get revision(): Rev {
    return this.known;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.load();
  }

  stop(): void {
    this.running = false;
    this.reset();
    clearTimeout(this.retryTimer);
    for (const w of this.waiters) w.done();
  }

  mark(): Rev {
    try {
      return this.keyspaceOf(this.keys).latestRevision;
    } catch {
      // the CRDs' keys route nowhere now: a progress answer newer than anything known is needed
      return this.known + 1n;
    }
  }

  lookup(mark: Rev): CustomFieldLookup | undefined {
    return this.known >= 0n && this.known >= mark ? this.find : undefined;
  }

  ready(mark: Rev, waitMs: number): Promise<CustomFieldLookup | undefined> {
    if (this.lookup(mark) || !this.running) return Promise.resolve(this.lookup(mark));
    return new Promise((resolve) => {
      const w = {
        mark,
        done: () => {
          clearTimeout(timer);
          this.waiters.delete(w);
          resolve(this.lookup(mark));
        },
      };
      const timer = setTimeout(w.done, waitMs);
      this.waiters.add(w);
      this.askProgress();
    });
  }

  private readonly find: CustomFieldLookup = (apiVersion, kind, field) => {
    const slash = apiVersion.indexOf("/");
    // the core group ("v1") has no custom resources
    if (slash < 0) return undefined;
    return this.index.get(`${apiVersion.slice(0, slash)}/${kind}`)?.get(apiVersion.slice(slash + 1))?.get(field);
  };

  /** Reads every CRD at one revision, then watches for changes after it. */
  private async load(): Promise<void> {
    const generation = ++this.generation;
    const { start, end = new Uint8Array(0) } = this.keys;
    const crds = new Map<string, CrdFields>();
    let member: Keyspace;
    let revision: bigint;
    try {
      member = this.keyspaceOf(this.keys);
      revision = await readAtOneRevision(member, start, end, PAGE, (kv) => this.put(crds, kv.key, kv.value));
    } catch (err) {
      if (generation === this.generation) this.failed(`reading the CRDs failed: ${(err as Error).message}`);
      return;
    }
    if (!this.running || generation !== this.generation) return;
    this.crds = crds;
    this.reindex();
    this.session = member.watch({
      own: true,
      send: (resp) => {
        if (generation === this.generation) this.received(resp);
      },
      forget: () => {
        if (generation === this.generation) this.failed("its watch on the CRDs ended");
      },
      congested: () => false,
      drained: async () => {},
    });
    this.session.create(create(WatchCreateRequestSchema, { key: start, rangeEnd: end, startRevision: revision + 1n }), WATCH_ID);
    this.retryMs = RETRY_MIN_MS;
    this.advance(revision);
  }

  private received(resp: WatchResponseOut): void {
    if (resp.canceled) return this.failed(`its watch on the CRDs was canceled: ${resp.cancelReason ?? "compacted"}`);
    if (resp.created) return;
    if (resp.events.length === 0) {
      // a progress answer: every event up to its revision has come before it
      this.asked = undefined;
      return this.advance(resp.header.revision);
    }
    for (const ev of resp.events) {
      if (ev.type === DELETE) this.crds.delete(new TextDecoder().decode(ev.kv.key));
      else this.put(this.crds, ev.kv.key, ev.kv.value);
    }
    this.reindex();
  }

  /** a CRD put: one strata cannot read is as good as none (its resources keep every object) */
  private put(crds: Map<string, CrdFields>, key: Uint8Array, value: Uint8Array): void {
    const name = new TextDecoder().decode(key);
    const crd = decodeCrd(value);
    if (crd) crds.set(name, crd);
    else crds.delete(name);
  }

  private reindex(): void {
    const index = new Map<string, Map<string, Map<string, CustomField>> | null>();
    for (const crd of this.crds.values()) {
      const gk = `${crd.group}/${crd.kind}`;
      // two CRDs claiming one kind: the apiserver serves one of them, strata cannot tell which
      index.set(gk, index.has(gk) ? null : crd.versions);
    }
    this.index = index;
  }

  private advance(revision: Rev): void {
    if (revision > this.known) this.known = revision;
    for (const w of this.waiters) if (this.known >= w.mark) w.done();
    if (this.waiters.size > 0) this.askProgress();
  }

  /** asks the watch for progress unless a recent request covers every waiter's mark */
  private askProgress(): void {
    if (!this.session || this.session.closed) return;
    const mark = this.mark();
    const now = Date.now();
    const wanted = [...this.waiters].some((w) => w.mark > (this.asked?.mark ?? -1n));
    if (this.asked && !wanted && now - this.asked.at < REASK_MS) return;
    this.asked = { at: now, mark };
    this.session.requestProgress();
  }

  /** the watch or the load failed: every custom field is unknown until a new load */
  private failed(why: string): void {
    this.reset();
    if (!this.running) return;
    this.log?.("warn", `strata: custom resources' field selectors answer every object until the CRDs are read again: ${why}`, { retryMs: this.retryMs });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.load(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  private reset(): void {
    this.generation++;
    this.session?.close();
    this.session = undefined;
    this.known = -1n;
    this.asked = undefined;
    this.crds = new Map();
    this.index = new Map();
  }
}
