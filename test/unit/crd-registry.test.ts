// The CRD registry (src/keyspace/crd-registry.ts) over a keyspace whose watch delivers only
// when the test says: CRDs read at start, then added, changed and removed through the
// watch; a request marked after a change it has not seen yet gets no lookup (the superset)
// until progress shows the change applied; a failed watch means the superset until reloaded.
import { afterEach, describe, expect, test } from "bun:test";
import type { RangeRequest, WatchCreateRequest } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Keyspace, WatchSession, WatchStream } from "../../src/keyspace/contract.ts";
import { CrdRegistry } from "../../src/keyspace/crd-registry.ts";
import { compareBytes, toKeyRange } from "../../src/mvcc/keyrange.ts";
import { finishRange } from "../../src/mvcc/range.ts";
import { DELETE, type Event, type KeyValue, PUT } from "../../src/mvcc/types.ts";
import type { CustomFieldLookup } from "../../src/selectors/index.ts";
import { asJson, type Crd, crdJson, crdKey, encrypted } from "../support/k8s-objects.ts";

const enc = (s: string) => new TextEncoder().encode(s);

/** a keyspace of a few keys; its watch sessions hold events and progress answers until flushed */
class Keys {
  revision = 10n;
  readonly kvs = new Map<string, KeyValue>();
  readonly sessions: Session[] = [];
  ranges = 0;

  get latestRevision() {
    return this.revision;
  }
  async range(r: RangeRequest) {
    this.ranges++;
    const range = toKeyRange(r.key, r.rangeEnd);
    const kvs = [...this.kvs.values()]
      .filter((kv) => compareBytes(kv.key, range.start) >= 0 && (range.end === undefined || compareBytes(kv.key, range.end) < 0))
      .sort((a, b) => compareBytes(a.key, b.key));
    return finishRange(r, { kvs, count: BigInt(kvs.length), revision: this.revision });
  }
  watch(stream: WatchStream): WatchSession {
    const s = new Session(this, stream);
    this.sessions.push(s);
    return s;
  }
  /** a put (a value) or a delete (none), held by every session until flushed */
  write(key: string, value?: Uint8Array): void {
    const rev = ++this.revision;
    const prev = this.kvs.get(key);
    const kv: KeyValue = { key: enc(key), value: value ?? new Uint8Array(0), createRevision: prev?.createRevision ?? rev, modRevision: rev, version: 1n, lease: 0n };
    if (value) this.kvs.set(key, kv);
    else this.kvs.delete(key);
    for (const s of this.sessions) s.held.push({ type: value ? PUT : DELETE, kv });
  }
  get session(): Session {
    return this.sessions.at(-1)!;
  }
}

class Session implements WatchSession {
  closed = false;
  held: Event[] = [];
  progressAsked = 0;
  watched: WatchCreateRequest | undefined;
  id = 0n;
  constructor(
    private readonly keys: Keys,
    readonly stream: WatchStream,
  ) {}
  create(c: WatchCreateRequest, id = c.watchId): void {
    [this.watched, this.id] = [c, id];
    this.stream.send({ header: { revision: this.keys.revision }, watchId: id, created: true, events: [] }, false);
  }
  cancel(): void {}
  requestProgress(): void {
    this.progressAsked++;
  }
  close(): void {
    this.closed = true;
  }
  /** delivers the held events in the watched range, then answers the progress asked for */
  flush(): void {
    const range = toKeyRange(this.watched!.key, this.watched!.rangeEnd);
    const events = this.held.filter((e) => compareBytes(e.kv.key, range.start) >= 0 && compareBytes(e.kv.key, range.end!) < 0);
    this.held = [];
    for (const e of events) this.stream.send({ header: { revision: e.kv.modRevision }, watchId: this.id, events: [e] }, false);
    if (this.progressAsked > 0) {
      this.progressAsked = 0;
      this.stream.send({ header: { revision: this.keys.revision }, watchId: -1n, events: [] }, false);
    }
  }
}

const widgets: Crd = { group: "example.com", kind: "Widget", plural: "widgets", versions: [{ name: "v1", fields: [".spec.color"] }] };
const gadgets: Crd = { group: "example.com", kind: "Gadget", plural: "gadgets", versions: [{ name: "v1", fields: [".spec.size"] }] };
const tick = () => Bun.sleep(5);
const color = (lookup: CustomFieldLookup | undefined, apiVersion = "example.com/v1") => lookup?.(apiVersion, "Widget", "spec.color");

let registry: CrdRegistry | undefined;
afterEach(() => registry?.stop());

function setup(...crds: Crd[]) {
  const keys = new Keys();
  for (const c of crds) keys.kvs.set(crdKey(c), { key: enc(crdKey(c)), value: crdJson(c), createRevision: 1n, modRevision: 1n, version: 1n, lease: 0n });
  // another resource's key beside the CRDs
  keys.kvs.set("/registry/example.com/widgets/a/w", { key: enc("/registry/example.com/widgets/a/w"), value: asJson({ apiVersion: "example.com/v1", kind: "Widget", name: "w" }), createRevision: 2n, modRevision: 2n, version: 1n, lease: 0n });
  registry = new CrdRegistry(() => keys as unknown as Keyspace, "/registry/");
  return { keys, registry };
}

describe("the CRD registry", () => {
  test("not started: nothing known, nothing waited for", async () => {
    const { registry } = setup(widgets);
    expect(registry.lookup(0n)).toBeUndefined();
    expect(await registry.ready(0n, 1000)).toBeUndefined();
  });

  test("reads the CRDs at start and watches after them; fields by group, version and kind", async () => {
    const { keys, registry } = setup(widgets, gadgets);
    registry.start();
    await tick();
    expect(registry.revision).toBe(10n);
    expect(keys.session.watched).toMatchObject({ key: enc("/registry/apiextensions.k8s.io/customresourcedefinitions/"), startRevision: 11n });
    const lookup = registry.lookup(registry.mark())!;
    expect(color(lookup)).toEqual({ path: ["spec", "color"], absentIsEmpty: true });
    expect(lookup("example.com/v1", "Gadget", "spec.size")).toBeDefined();
    expect(lookup("example.com/v1", "Gadget", "spec.color")).toBeUndefined();
    expect(color(lookup, "example.com/v2")).toBeUndefined();
    expect(color(lookup, "v1")).toBeUndefined();
  });

  test("a CRD added, changed, removed: each used once the registry has it", async () => {
    const { keys, registry } = setup();
    registry.start();
    await tick();
    expect(color(registry.lookup(registry.mark()))).toBeUndefined();

    keys.write(crdKey(widgets), crdJson(widgets));
    // a request after the change, before the registry saw it: no lookup (the superset)
    const mark = registry.mark();
    expect(registry.lookup(mark)).toBeUndefined();
    const waiting = registry.ready(mark, 5000);
    await tick();
    expect(keys.session.progressAsked).toBe(1);
    keys.session.flush();
    expect(color(await waiting)).toBeDefined();

    // changed: the field is no longer declared
    keys.write(crdKey(widgets), crdJson({ ...widgets, versions: [{ name: "v1", fields: [".spec.size"] }] }));
    const changed = registry.ready(registry.mark(), 5000);
    keys.session.flush();
    const after = (await changed)!;
    expect(color(after)).toBeUndefined();
    expect(after("example.com/v1", "Widget", "spec.size")).toBeDefined();

    // replaced by a value strata cannot read: as good as none
    keys.write(crdKey(widgets), crdJson(widgets));
    keys.write(crdKey(widgets), encrypted("crd"));
    const sealed = registry.ready(registry.mark(), 5000);
    keys.session.flush();
    expect(color(await sealed)).toBeUndefined();

    // removed
    keys.write(crdKey(widgets), crdJson(widgets));
    keys.session.flush();
    keys.write(crdKey(widgets));
    const removed = registry.ready(registry.mark(), 5000);
    keys.session.flush();
    const gone = await removed;
    expect(gone).toBeDefined();
    expect(color(gone)).toBeUndefined();
  });

  test("behind the keyspace: no lookup until progress shows it caught up, none after the wait", async () => {
    const { keys, registry } = setup(widgets);
    registry.start();
    await tick();
    // writes elsewhere move the keyspace on; the registry knows nothing newer yet
    keys.write("/registry/example.com/widgets/a/w2", asJson({ apiVersion: "example.com/v1", kind: "Widget", name: "w2" }));
    const mark = registry.mark();
    expect(registry.lookup(mark)).toBeUndefined();
    expect(registry.lookup(mark - 1n)).toBeDefined();
    // no answer within the wait: the superset
    expect(await registry.ready(mark, 30)).toBeUndefined();
    const waiting = registry.ready(mark, 5000);
    keys.session.flush();
    expect(color(await waiting)).toBeDefined();
    expect(color(registry.lookup(mark))).toBeDefined();
  });

  test("two CRDs claiming one kind: neither is used", async () => {
    const { registry } = setup(widgets, { ...widgets, plural: "widgetz" });
    registry.start();
    await tick();
    expect(color(registry.lookup(registry.mark()))).toBeUndefined();
  });

  test("its watch ends: the superset until the CRDs are read again", async () => {
    const { keys, registry } = setup(widgets);
    registry.start();
    await tick();
    const first = keys.session;
    first.stream.send({ header: { revision: 10n }, watchId: first.id, canceled: true, compactRevision: 10n, events: [] }, false);
    expect(registry.lookup(0n)).toBeUndefined();
    expect(first.closed).toBe(true);
    // events of the ended watch change nothing
    first.stream.send({ header: { revision: 11n }, watchId: -1n, events: [] }, false);
    expect(registry.lookup(0n)).toBeUndefined();
    const reloaded = registry.ready(registry.mark(), 5000);
    expect(color(await reloaded)).toBeDefined();
    expect(keys.sessions).toHaveLength(2);
    expect(keys.ranges).toBe(2);
  });

  test("stopped: nothing known, waiters answered", async () => {
    const { keys, registry } = setup(widgets);
    registry.start();
    await tick();
    keys.write("/registry/other", enc("x"));
    const waiting = registry.ready(registry.mark(), 5000);
    registry.stop();
    expect(await waiting).toBeUndefined();
    expect(registry.lookup(0n)).toBeUndefined();
    expect(keys.session.closed).toBe(true);
  });
});
