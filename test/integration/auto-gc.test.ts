// Storage-side garbage collection (--auto-gc) against strata on the backend under test,
// with plain etcd clients writing what kube-apiserver writes: an owner labelled
// skip-controller-manager-metadata-caching=true with 1,000 dependents — custom resources
// stored as JSON, and built-ins (a Deployment and its ReplicaSets) in the protobuf envelope —
// deleted with each propagation policy. The keys left and the watch events are compared
// with a reference written here from Kubernetes' documented garbage-collector rules
// (kubernetes.io/docs/concepts/architecture/garbage-collection, ownerReferences'
// blockOwnerDeletion), not from strata's code, and in any order (the collector's workers
// run in parallel). strata writes each change at a revision of its own, all in the
// database transaction of the apiserver's write that started them.
// Without the flag nothing but the owner goes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Etcd3 } from "etcd3";
import type { WatchResponse } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { pbField, pbMessage } from "../support/k8s-objects.ts";
import { rawWatch, type RawWatch } from "../support/raw-watch.ts";
import { etcdClient, startStrata, type StrataProcess } from "../support/strata.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const LABEL = "skip-controller-manager-metadata-caching";
const DEPENDENTS = 1000;

// ---- the objects, as the test models them

interface Ref {
  uid: string;
  kind: string;
  name: string;
  block: boolean;
}

interface Obj {
  key: string;
  kind: string;
  apiVersion: string;
  name: string;
  uid: string;
  labels: Record<string, string>;
  owners: Ref[];
  finalizers: string[];
  deleting: boolean;
}

type Encoding = "json" | "protobuf";

/** what the comparison looks at: the garbage collector's fields */
const summary = (o: Obj) => ({ uid: o.uid, owners: o.owners.map((r) => r.uid).sort(), finalizers: [...o.finalizers].sort(), deleting: o.deleting });

function encode(o: Obj, encoding: Encoding): Uint8Array {
  if (encoding === "json") {
    const metadata: Record<string, unknown> = { name: o.name, namespace: "gc", uid: o.uid, creationTimestamp: "2026-01-01T00:00:00Z" };
    if (Object.keys(o.labels).length) metadata.labels = o.labels;
    if (o.deleting) Object.assign(metadata, { deletionTimestamp: "2026-01-02T00:00:00Z", deletionGracePeriodSeconds: 0 });
    if (o.owners.length) {
      metadata.ownerReferences = o.owners.map((r) => ({ apiVersion: o.apiVersion, kind: r.kind, name: r.name, uid: r.uid, controller: true, blockOwnerDeletion: r.block }));
    }
    if (o.finalizers.length) metadata.finalizers = o.finalizers;
    return enc.encode(`${JSON.stringify({ apiVersion: o.apiVersion, kind: o.kind, metadata, spec: { size: 3 } })}\n`);
  }
  // ObjectMeta from k8s.io/apimachinery's generated.proto: name=1, namespace=3, uid=5,
  // creationTimestamp=8, deletionTimestamp=9 (Time: seconds=1), deletionGracePeriodSeconds=10,
  // labels=11, ownerReferences=13 (kind=1, name=3, uid=4, apiVersion=5, controller=6,
  // blockOwnerDeletion=7), finalizers=14
  const meta = pbMessage(
    pbField(1, o.name),
    pbField(3, "gc"),
    pbField(5, o.uid),
    pbField(8, pbMessage(pbField(1, 1767225600))),
    ...(o.deleting ? [pbField(9, pbMessage(pbField(1, 1767312000))), pbField(10, 0)] : []),
    ...Object.entries(o.labels).map(([k, v]) => pbField(11, pbMessage(pbField(1, k), pbField(2, v)))),
    ...o.owners.map((r) => pbField(13, pbMessage(pbField(1, r.kind), pbField(3, r.name), pbField(4, r.uid), pbField(5, "apps/v1"), pbField(6, true), pbField(7, r.block)))),
    ...o.finalizers.map((f) => pbField(14, f)),
  );
  const object = pbMessage(pbField(1, meta), pbField(2, pbMessage(pbField(1, 3))));
  const unknown = pbMessage(pbField(1, pbMessage(pbField(1, o.apiVersion), pbField(2, o.kind))), pbField(2, object));
  return new Uint8Array([0x6b, 0x38, 0x73, 0x00, ...unknown]);
}

// a protobuf reader of the test's own, for what strata stored
function fields(buf: Uint8Array, start = 0, end = buf.length): Array<{ no: number; value: Uint8Array | number }> {
  const out: Array<{ no: number; value: Uint8Array | number }> = [];
  let p = start;
  const varint = () => {
    let v = 0, shift = 0, b;
    do {
      b = buf[p++]!;
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return v;
  };
  while (p < end) {
    const tag = varint();
    if ((tag & 7) === 0) out.push({ no: tag >>> 3, value: varint() });
    else if ((tag & 7) === 2) {
      const n = varint();
      out.push({ no: tag >>> 3, value: buf.subarray(p, p + n) });
      p += n;
    } else throw new Error(`wire type ${tag & 7}`);
  }
  return out;
}

function decode(key: string, value: Uint8Array): Obj {
  if (value[0] === 0x7b) {
    const o = JSON.parse(dec.decode(value));
    const m = o.metadata;
    return {
      key,
      kind: o.kind,
      apiVersion: o.apiVersion,
      name: m.name,
      uid: m.uid,
      labels: m.labels ?? {},
      owners: (m.ownerReferences ?? []).map((r: Record<string, unknown>) => ({ uid: r.uid, kind: r.kind, name: r.name, block: r.blockOwnerDeletion === true })),
      finalizers: m.finalizers ?? [],
      deleting: typeof m.deletionTimestamp === "string",
    };
  }
  const unknown = fields(value, 4);
  const raw = unknown.find((f) => f.no === 2)!.value as Uint8Array;
  const meta = fields(fields(raw).find((f) => f.no === 1)!.value as Uint8Array);
  const str = (v: Uint8Array | number) => dec.decode(v as Uint8Array);
  const o: Obj = { key, kind: "", apiVersion: "", name: "", uid: "", labels: {}, owners: [], finalizers: [], deleting: false };
  for (const f of meta) {
    if (f.no === 1) o.name = str(f.value);
    if (f.no === 5) o.uid = str(f.value);
    if (f.no === 9) o.deleting = true;
    if (f.no === 14) o.finalizers.push(str(f.value));
    if (f.no === 11) {
      const e = fields(f.value as Uint8Array);
      o.labels[str(e.find((x) => x.no === 1)!.value)] = str(e.find((x) => x.no === 2)!.value);
    }
    if (f.no === 13) {
      const r = fields(f.value as Uint8Array);
      const get = (no: number) => r.find((x) => x.no === no)?.value;
      o.owners.push({ kind: str(get(1)!), name: str(get(3)!), uid: str(get(4)!), block: get(7) === 1 });
    }
  }
  return o;
}

// ---- the reference: Kubernetes' garbage collector's documented rules

type Change = { type: "PUT" | "DELETE"; key: string; after?: ReturnType<typeof summary> };

/**
 * What Kubernetes' garbage collector leaves and writes after `start` was applied to `objects`
 * (the apiserver's write starting the deletion): the final objects and every change,
 * the starting one included.
 * - Deleting an object through the API: with finalizers, or with the foreground or
 *   orphan policy, it only begins its deletion (deletionTimestamp; the policy's finalizer
 *   added); otherwise its key goes.
 * - An object whose owners are all gone is deleted (background); with an owner that still
 *   exists, only the references to the gone owners are removed.
 * - An owner with the orphan finalizer: the reference to it is removed from each dependent,
 *   then the finalizer; with no finalizer left the object goes.
 * - An owner with foregroundDeletion: each dependent is deleted (in the foreground when it
 *   has dependents itself); the owner goes once no dependent whose reference to it has
 *   blockOwnerDeletion exists.
 */
function reference(objects: Map<string, Obj>, start: Change & { object?: Obj }): { objects: Map<string, Obj>; changes: Change[] } {
  const live = new Map([...objects].map(([k, o]) => [k, structuredClone(o)]));
  const changes: Change[] = [];
  const byUid = (uid: string) => [...live.values()].find((o) => o.uid === uid);
  const dependentsOf = (uid: string) => [...live.values()].filter((o) => o.owners.some((r) => r.uid === uid));
  const write = (o: Obj) => {
    live.set(o.key, o);
    changes.push({ type: "PUT", key: o.key, after: summary(o) });
  };
  const remove = (o: Obj) => {
    live.delete(o.key);
    changes.push({ type: "DELETE", key: o.key });
  };
  const apiDelete = (o: Obj, policy: "background" | "foreground" | "orphan") => {
    if (o.finalizers.includes("orphan")) policy = "orphan";
    if (o.finalizers.includes("foregroundDeletion")) policy = "foreground";
    if (policy === "background" && o.finalizers.length === 0) return remove(o);
    const f = policy === "orphan" ? ["orphan"] : policy === "foreground" ? ["foregroundDeletion"] : [];
    write({ ...o, deleting: true, finalizers: [...o.finalizers, ...f.filter((x) => !o.finalizers.includes(x))] });
  };
  // the collector's work, until nothing changes
  const settle = () => {
    for (let progress = true, rounds = 0; progress && rounds < 100; rounds++) {
      progress = false;
      for (const o of [...live.values()]) {
        if (!live.has(o.key)) continue;
        const current = live.get(o.key)!;
        if (current.deleting && current.finalizers.includes("orphan")) {
          for (const d of dependentsOf(current.uid)) write({ ...d, owners: d.owners.filter((r) => r.uid !== current.uid) });
          const rest = current.finalizers.filter((f) => f !== "orphan");
          if (rest.length === 0) remove(current);
          else write({ ...current, finalizers: rest });
          progress = true;
          continue;
        }
        if (current.deleting && current.finalizers.includes("foregroundDeletion")) {
          for (const d of dependentsOf(current.uid)) {
            if (d.deleting) continue;
            const solid = d.owners.some((r) => r.uid !== current.uid && byUid(r.uid));
            if (solid) write({ ...d, owners: d.owners.filter((r) => r.uid !== current.uid) });
            else apiDelete(d, dependentsOf(d.uid).length > 0 ? "foreground" : "background");
            progress = true;
          }
          if (!dependentsOf(current.uid).some((d) => d.owners.some((r) => r.uid === current.uid && r.block))) {
            const rest = current.finalizers.filter((f) => f !== "foregroundDeletion");
            if (rest.length === 0) remove(current);
            else write({ ...current, finalizers: rest });
            progress = true;
          }
          continue;
        }
        if (current.owners.length > 0 && !current.deleting) {
          const gone = current.owners.filter((r) => !byUid(r.uid));
          if (gone.length === 0) continue;
          if (gone.length < current.owners.length) write({ ...current, owners: current.owners.filter((r) => byUid(r.uid)) });
          else apiDelete(current, "background");
          progress = true;
        }
      }
    }
  };
  if (start.type === "DELETE") remove(live.get(start.key)!);
  else write(start.object!);
  settle();
  return { objects: live, changes };
}

// ---- the scene: an owner, its dependents, and what makes a collection interesting

interface Scene {
  encoding: Encoding;
  owner: Obj;
  objects: Map<string, Obj>;
}

let sceneNo = 0;

/**
 * An owner with DEPENDENTS dependents (all blocking, as controllers write them), plus:
 * dependent 0 has two dependents of its own; dependent 1 carries a finalizer of another
 * controller; dependent 2 has a second owner that exists; dependent 3's reference does
 * not block.
 */
function scene(encoding: Encoding): Scene {
  const n = sceneNo++;
  const [group, ownerKind, ownerRes, depKind, depRes, apiVersion] = encoding === "json"
    ? ["example.com/", "WidgetSet", "widgetsets", "Widget", "widgets", "example.com/v1"]
    : ["", "Deployment", "deployments", "ReplicaSet", "replicasets", "apps/v1"];
  const obj = (res: string, kind: string, name: string, extra: Partial<Obj> = {}): Obj => ({
    key: `/registry/${group}${res}/gc/${name}`,
    kind,
    apiVersion,
    name,
    uid: `uid-${name}`,
    labels: {},
    owners: [],
    finalizers: [],
    deleting: false,
    ...extra,
  });
  const owner = obj(ownerRes, ownerKind, `owner-${n}`, { labels: { [LABEL]: "true", app: "shop" } });
  const other = obj(ownerRes, ownerKind, `other-${n}`, { labels: { [LABEL]: "true" } });
  const ref = (o: Obj, block = true): Ref => ({ uid: o.uid, kind: o.kind, name: o.name, block });
  const objects = new Map<string, Obj>([[owner.key, owner], [other.key, other]]);
  for (let i = 0; i < DEPENDENTS; i++) {
    const d = obj(depRes, depKind, `owner-${n}-${String(i).padStart(4, "0")}`, { owners: [ref(owner, i !== 3)] });
    if (i === 1) d.finalizers = ["example.com/keep"];
    if (i === 2) d.owners.push(ref(other));
    objects.set(d.key, d);
    if (i === 0) {
      for (const g of ["a", "b"]) {
        const gc = obj(depRes, depKind, `${d.name}-${g}`, { owners: [ref(d)] });
        objects.set(gc.key, gc);
      }
    }
  }
  return { encoding, owner, objects };
}

// ---- strata

let gc: StrataProcess, off: StrataProcess;
let gcClient: Etcd3, offClient: Etcd3;

beforeAll(async () => {
  [gc, off] = await Promise.all([startStrata(["--auto-gc"]), startStrata()]);
  gcClient = etcdClient(gc.endpoint);
  offClient = etcdClient(off.endpoint);
}, 120_000);

afterAll(async () => {
  gcClient?.close();
  offClient?.close();
  await Promise.all([gc?.stop(), off?.stop()]);
});

const b = (s: string) => Buffer.from(s);

/** kube-apiserver's create: put if absent */
async function createAll(c: Etcd3, s: Scene): Promise<void> {
  const all = [...s.objects.values()];
  for (let i = 0; i < all.length; i += 50) {
    await Promise.all(all.slice(i, i + 50).map((o) =>
      c.kv.txn({
        compare: [{ key: b(o.key), target: "Mod", result: "Equal", mod_revision: "0" }],
        success: [{ request_put: { key: b(o.key), value: Buffer.from(encode(o, s.encoding)) } }],
      } as never)
    ));
  }
}

/** the store's revision now, plus one: where a watch of what follows starts */
async function nextRevision(c: Etcd3): Promise<string> {
  return String(BigInt((await c.kv.range({ key: b("/") } as never)).header.revision) + 1n);
}

async function modRevision(c: Etcd3, key: string): Promise<string> {
  return (await c.kv.range({ key: b(key) } as never)).kvs[0]!.mod_revision;
}

/** kube-apiserver's delete (guarded by mod_revision); its header revision */
async function apiDelete(c: Etcd3, key: string): Promise<string> {
  const r = await c.kv.txn({
    compare: [{ key: b(key), target: "Mod", result: "Equal", mod_revision: await modRevision(c, key) }],
    success: [{ request_delete_range: { key: b(key) } }],
  } as never);
  expect(r.succeeded).toBe(true);
  return r.header.revision;
}

/** kube-apiserver's update (guarded by mod_revision); its header revision */
async function apiUpdate(c: Etcd3, o: Obj, encoding: Encoding): Promise<string> {
  const r = await c.kv.txn({
    compare: [{ key: b(o.key), target: "Mod", result: "Equal", mod_revision: await modRevision(c, o.key) }],
    success: [{ request_put: { key: b(o.key), value: Buffer.from(encode(o, encoding)) } }],
  } as never);
  expect(r.succeeded).toBe(true);
  return r.header.revision;
}

/** the scene's keys now */
async function stored(c: Etcd3, s: Scene): Promise<Map<string, Obj>> {
  const prefixes = new Set([...s.objects.keys()].map((k) => k.slice(0, k.lastIndexOf("/") + 1)));
  const out = new Map<string, Obj>();
  for (const p of prefixes) {
    const r = await c.kv.range({ key: b(p), range_end: b(p.slice(0, -1) + "0") } as never);
    for (const kv of r.kvs) {
      const key = Buffer.from(kv.key).toString();
      if (s.objects.has(key)) out.set(key, decode(key, new Uint8Array(kv.value)));
    }
  }
  return out;
}

/** A watch on everything from a revision; `until` reads events up to a sentinel key written after the change. */
function watchFrom(strata: StrataProcess, revision: string): RawWatch {
  const w = rawWatch(strata.endpoint);
  w.send({ requestUnion: { case: "createRequest", value: { key: b("\0"), rangeEnd: b("\0"), startRevision: BigInt(revision) } } });
  return w;
}

let sentinels = 0;
async function eventsUntilSentinel(c: Etcd3, w: RawWatch): Promise<Array<{ type: "PUT" | "DELETE"; key: string; value: Uint8Array; revision: bigint }>> {
  const sentinel = `/sentinel/${sentinels++}`;
  await c.put(sentinel).value("x").exec();
  const seen = () => w.responses.flatMap((r: WatchResponse) => r.events);
  // bounded by progress: the wait ends when the sentinel arrives, or when nothing arrived for 30 s
  let count = -1, since = Date.now();
  while (!seen().some((e) => dec.decode(e.kv!.key) === sentinel)) {
    const n = seen().length;
    if (n !== count) [count, since] = [n, Date.now()];
    if (Date.now() - since > 30_000) throw new Error(`the watch stalled after ${n} events`);
    await new Promise((r) => setTimeout(r, 20));
  }
  w.close();
  return seen().filter((e) => !dec.decode(e.kv!.key).startsWith("/sentinel/")).map((e) => ({
    type: e.type === 1 ? "DELETE" as const : "PUT" as const,
    key: dec.decode(e.kv!.key),
    value: e.kv!.value,
    revision: e.kv!.modRevision,
  }));
}

/** changes as the comparison sees them: type, key and, for a put, the collector's fields; sorted */
function comparable(changes: Change[]): string[] {
  return changes.map((c) => JSON.stringify([c.type, c.key, c.after ?? null])).sort();
}

async function metric(strata: StrataProcess, action: string): Promise<number> {
  const text = await (await fetch(`${strata.metrics}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`strata_auto_gc_total{action="${action}"}`));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

/**
 * Runs a scene on strata with --auto-gc: the apiserver's starting write, then checks the
 * keys and events against the reference. Returns what is left, for follow-up steps.
 */
async function run(s: Scene, start: Change & { object?: Obj }): Promise<{ left: Map<string, Obj>; expected: ReturnType<typeof reference> }> {
  await createAll(gcClient, s);
  const w = watchFrom(gc, await nextRevision(gcClient));
  const expected = reference(s.objects, start);
  const revision = start.type === "DELETE" ? await apiDelete(gcClient, start.key) : await apiUpdate(gcClient, start.object!, s.encoding);
  const events = (await eventsUntilSentinel(gcClient, w)).filter((e) => s.objects.has(e.key));
  // every change is a write of the apiserver write's transaction: a revision of its own,
  // nothing else in between, the last one the answer's
  const revisions = events.map((e) => e.revision);
  expect(new Set(revisions).size).toBe(events.length);
  expect(revisions.at(-1)! - revisions[0]! + 1n).toBe(BigInt(events.length));
  expect(revisions.at(-1)).toBe(BigInt(revision));
  const got: Change[] = events.map((e) => (e.type === "DELETE" ? { type: "DELETE", key: e.key } : { type: "PUT", key: e.key, after: summary(decode(e.key, e.value)) }));
  expect(comparable(got)).toEqual(comparable(expected.changes));
  const left = await stored(gcClient, s);
  expect([...left.keys()].sort()).toEqual([...expected.objects.keys()].sort());
  for (const [k, o] of left) expect(summary(o)).toEqual(summary(expected.objects.get(k)!));
  return { left, expected };
}

for (const encoding of ["json", "protobuf"] as const) {
  describe(`${encoding === "json" ? "custom resources (JSON)" : "built-ins (protobuf)"}: ${DEPENDENTS} dependents`, () => {
    test("background: the owner's key goes, its dependents with it (and theirs); one with finalizers begins its deletion; one with another owner keeps it", async () => {
      const s = scene(encoding);
      const before = await metric(gc, "deleted");
      const { expected } = await run(s, { type: "DELETE", key: s.owner.key });
      // dependents and grandchildren, less the one waiting on a finalizer and the one with another owner
      expect(expected.changes.filter((c) => c.type === "DELETE").length).toBe(1 + DEPENDENTS - 2 + 2);
      expect((await metric(gc, "deleted")) - before).toBe(DEPENDENTS - 2 + 2);
    }, 300_000);

    test("orphan: the reference to the owner is stripped from every dependent, then the owner goes", async () => {
      const s = scene(encoding);
      const before = await metric(gc, "reference_stripped");
      const owner = { ...s.owner, deleting: true, finalizers: ["orphan"] };
      const { left } = await run(s, { type: "PUT", key: owner.key, object: owner });
      expect(left.has(s.owner.key)).toBe(false);
      expect([...left.values()].filter((o) => o.owners.some((r) => r.uid === s.owner.uid))).toEqual([]);
      expect((await metric(gc, "reference_stripped")) - before).toBe(DEPENDENTS);
    }, 300_000);

    test("foreground: dependents go first; the owner stays while a blocking dependent waits on its finalizer, and goes when that dependent does", async () => {
      const s = scene(encoding);
      const owner = { ...s.owner, deleting: true, finalizers: ["foregroundDeletion"] };
      const { left, expected } = await run(s, { type: "PUT", key: owner.key, object: owner });
      expect(left.get(s.owner.key)?.finalizers).toEqual(["foregroundDeletion"]);
      // the dependent's own controller finishes: its finalizer removed, the apiserver deletes its key
      const waiting = [...left.values()].find((o) => o.finalizers.includes("example.com/keep"))!;
      expect(waiting.deleting).toBe(true);
      const next = reference(expected.objects, { type: "DELETE", key: waiting.key });
      const w = watchFrom(gc, await nextRevision(gcClient));
      await apiDelete(gcClient, waiting.key);
      const events = (await eventsUntilSentinel(gcClient, w)).filter((e) => s.objects.has(e.key));
      expect(comparable(events.map((e) => ({ type: e.type, key: e.key, after: e.type === "PUT" ? summary(decode(e.key, e.value)) : undefined }))))
        .toEqual(comparable(next.changes));
      const after = await stored(gcClient, s);
      expect([...after.keys()].sort()).toEqual([...next.objects.keys()].sort());
      expect(after.has(s.owner.key)).toBe(false);
    }, 300_000);
  });
}

test("without --auto-gc nothing but the owner goes", async () => {
  const s = scene("json");
  await createAll(offClient, s);
  await apiDelete(offClient, s.owner.key);
  const left = await stored(offClient, s);
  expect(left.size).toBe(s.objects.size - 1);
  const orphaned = { ...s.objects.get([...s.objects.keys()].find((k) => k.endsWith("-0005"))!)! };
  expect(summary(left.get(orphaned.key)!)).toEqual(summary(orphaned));
}, 300_000);
