// Field selectors on custom resources' CRD selectableFields, against strata on the backend
// under test: CRDs stored as kube-apiserver stores them (JSON, apiextensions.k8s.io/v1beta1)
// beside their custom resources. Ranges answer exactly what a reference matcher written
// here keeps (a field's value read from the object by its JSON path, rendered as Kubernetes
// compares it); a watch delivers exactly the changes whose new or previous object matches;
// a field the CRD does not declare for the stored version — or a kind without a CRD —
// answers the superset; a CRD created, changed or deleted after its resources exist is used
// from the next request on; after a restart the stored CRDs are read again.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create, type DescMessage, fromBinary, type MessageInitShape, type MessageShape, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  DeleteRangeRequestSchema,
  DeleteRangeResponseSchema,
  PutRequestSchema,
  PutResponseSchema,
  RangeRequestSchema,
  type RangeResponse,
  RangeResponseSchema,
  type WatchResponse,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { asJson, type Crd, crdJson, crdKey, type K8sObject, referenceFields, referenceLabels } from "../support/k8s-objects.ts";
import { prefixEnd, rawWatch } from "../support/raw-watch.ts";
import { startStrata, type StrataProcess } from "../support/strata.ts";

function rpc<I extends DescMessage, O extends DescMessage>(client: grpc.Client, method: string, input: I, output: O, req: MessageInitShape<I>): Promise<MessageShape<O>> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(`/etcdserverpb.KV/${method}`, (x: Buffer) => x, (x: Buffer) => x, Buffer.from(toBinary(input, create(input, req))), (err, out) => {
      if (err) reject(new Error(`${grpc.status[err.code]} ${err.details}`));
      else resolve(fromBinary(output, out!));
    });
  });
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

// widgets: v1 is stored, v2 served too (no conversion webhook: the same fields in both)
const WIDGETS: Crd = {
  group: "example.com",
  kind: "Widget",
  plural: "widgets",
  versions: ["v1", "v2"].map((name) => ({
    name,
    fields: [".spec.color", ".spec.replicas", ".status.ready"],
    properties: {
      spec: { type: "object", properties: { color: { type: "string" }, replicas: { type: "integer" }, size: { type: "string" } } },
      status: { type: "object", properties: { ready: { type: "boolean" } } },
    },
  })),
};
// gadgets: a CRD declaring no selectable field
const GADGETS: Crd = { group: "example.com", kind: "Gadget", plural: "gadgets", versions: [{ name: "v1" }] };
// things: their CRD comes and goes during the tests
const THINGS: Crd = { group: "example.org", kind: "Thing", plural: "things", versions: [{ name: "v1", fields: [".spec.shape"] }] };

/** the version each CRD declares selectable fields in, by group/kind */
const declared = new Map<string, { versions: Set<string>; fields: string[] }>();
function declare(c: Crd | undefined, groupKind: string) {
  if (!c) return declared.delete(groupKind);
  const fields = c.versions.flatMap((v) => v.fields ?? []).map((p) => p.slice(1));
  declared.set(groupKind, { versions: new Set(c.versions.filter((v) => (v.fields ?? []).length > 0).map((v) => v.name)), fields: [...new Set(fields)] });
}

const keyOf = (o: K8sObject) => `/registry/${o.apiVersion.split("/")[0]}/${o.kind.toLowerCase()}s/${o.namespace}/${o.name}`;

function widget(i: number, change: Partial<{ color: string | null; version: string }> = {}): K8sObject {
  const color = change.color !== undefined ? change.color : [null, "red", "blue", "green"][i % 4];
  const spec: Record<string, unknown> = { replicas: i % 5, size: i % 2 ? "s" : "l" };
  if (color !== null) spec.color = color;
  const body: Record<string, unknown> = { spec };
  if (i % 3) body.status = { ready: i % 3 === 1 };
  // a few stored in v2, one in a version the CRD does not have (strata cannot tell its fields)
  const version = change.version ?? (i === 29 ? "v0" : i % 7 === 0 ? "v2" : "v1");
  return { apiVersion: `example.com/${version}`, kind: "Widget", name: `w-${String(i).padStart(2, "0")}`, namespace: i % 2 ? "b" : "a", labels: { tier: i % 3 ? "front" : "back" }, body };
}
const gadget = (i: number): K8sObject => ({ apiVersion: "example.com/v1", kind: "Gadget", name: `g-${i}`, namespace: "a", body: { spec: { size: String(i % 3) } } });
const thing = (i: number): K8sObject => ({ apiVersion: "example.org/v1", kind: "Thing", name: `t-${i}`, namespace: "a", body: { spec: { shape: i % 2 ? "round" : "square" } } });

/** a field's value as Kubernetes compares it: read by its path, a string as it is, booleans and integers as text, absent "" */
function referenceValue(o: K8sObject, field: string): string {
  let v: unknown = o.body;
  for (const step of field.split(".")) v = v && typeof v === "object" ? (v as Record<string, unknown>)[step] : undefined;
  return v === undefined || v === null ? "" : String(v);
}

/**
 * The keys the reference keeps: a field is evaluated when the object's CRD declares it in
 * the object's stored version; any other field term cannot be (the object is kept unless
 * a term that can be fails).
 */
function expected(prefix: string, labels: string, fields: string): string[] {
  return [...objects.keys()].filter((k) => k.startsWith(prefix)).sort().filter((k) => {
    const o = objects.get(k)!;
    const [group, version] = o.apiVersion.split("/");
    const crd = declared.get(`${group}/${o.kind}`);
    const known: Record<string, string> = { "metadata.name": o.name, "metadata.namespace": o.namespace ?? "" };
    if (crd?.versions.has(version!)) for (const f of crd.fields) known[f] = referenceValue(o, f);
    const evaluable = fields.split(",").filter((t) => t.trim() !== "" && t.split(/!=|==|=/)[0]!.trim() in known);
    return referenceLabels(labels, o.labels ?? {}) && referenceFields(evaluable.join(","), known);
  });
}

let strata: StrataProcess;
let client: grpc.Client;
const objects = new Map<string, K8sObject>();

const range = (req: MessageInitShape<typeof RangeRequestSchema>) => rpc(client, "Range", RangeRequestSchema, RangeResponseSchema, req);
const putRaw = async (key: string, value: Uint8Array) => (await rpc(client, "Put", PutRequestSchema, PutResponseSchema, { key: enc(key), value })).header!.revision;
const put = (o: K8sObject) => (objects.set(keyOf(o), o), putRaw(keyOf(o), asJson(o)));
const del = async (key: string) => {
  objects.delete(key);
  return (await rpc(client, "DeleteRange", DeleteRangeRequestSchema, DeleteRangeResponseSchema, { key: enc(key) })).header!.revision;
};
const putCrd = (c: Crd) => (declare(c, `${c.group}/${c.kind}`), putRaw(crdKey(c), crdJson(c)));

/** every page of a selector list, as the apiserver paginates it */
async function list(prefix: string, labels: string, fields: string, limit: number) {
  const pages: RangeResponse[] = [];
  let key = enc(prefix), revision = 0n;
  for (;;) {
    const r = await range({ key, rangeEnd: prefixEnd(prefix), limit: BigInt(limit), revision, labelSelector: labels, fieldSelector: fields });
    pages.push(r);
    if (revision === 0n) revision = r.header!.revision;
    if (!r.more) return pages;
    key = new Uint8Array([...r.kvs.at(-1)!.key, 0]);
  }
}
const keys = async (prefix: string, fields: string, labels = "") => (await list(prefix, labels, fields, 0)).flatMap((p) => p.kvs.map((kv) => dec(kv.key)));

beforeAll(async () => {
  strata = await startStrata();
  client = new grpc.Client(strata.endpoint, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": -1 });
  // resources first, then their CRDs: the registry learns these through its watch
  for (let i = 0; i < 30; i++) await put(widget(i));
  for (let i = 0; i < 6; i++) await put(gadget(i));
  for (let i = 0; i < 6; i++) await put(thing(i));
  await putCrd(WIDGETS);
  await putCrd(GADGETS);
}, 120_000);

afterAll(async () => {
  client?.close();
  await strata?.stop();
});

const WIDGET_CASES: Array<[string, string]> = [
  ["", "spec.color=red"],
  ["", "spec.color!=red"],
  ["", "spec.color="],
  ["", "spec.replicas=3"],
  ["", "status.ready=true"],
  ["", "status.ready!=true"],
  ["", "spec.color=blue,metadata.namespace=a"],
  ["tier=front", "spec.color==green,spec.replicas!=0"],
  ["", "spec.color=purple"],
];

describe("ranges over custom resources with CRD fields", () => {
  test("exactly the reference's keys, unpaginated and in pages; count and more over matches", async () => {
    for (const [labels, fields] of WIDGET_CASES) {
      const want = expected("/registry/example.com/widgets/", labels, fields);
      const what = `labels ${JSON.stringify(labels)} fields ${JSON.stringify(fields)}`;
      // the case is meant to select: fewer than every widget, besides the one strata cannot tell
      expect(want.length, what).toBeLessThan(30);
      for (const limit of [0, 1, 7]) {
        const pages = await list("/registry/example.com/widgets/", labels, fields, limit);
        expect(pages.flatMap((p) => p.kvs.map((kv) => dec(kv.key))), `${what} limit ${limit}`).toEqual(want);
        expect(Number(pages[0]!.count), `${what} count`).toBe(want.length);
        expect(pages[0]!.more, `${what} more`).toBe(limit > 0 && want.length > limit);
      }
    }
  }, 60_000);

  test("a widget stored in a version the CRD lacks, a field the CRD does not declare, a kind declaring none: the superset", async () => {
    expect(await keys("/registry/example.com/widgets/", "spec.color=purple")).toEqual(["/registry/example.com/widgets/b/w-29"]);
    const all = [...objects.keys()].filter((k) => k.startsWith("/registry/example.com/widgets/")).sort();
    expect(await keys("/registry/example.com/widgets/", "spec.size=s")).toEqual(all);
    // a failing metadata term still drops
    expect(await keys("/registry/example.com/widgets/", "spec.size=s,metadata.namespace=a")).toEqual(all.filter((k) => k.includes("/a/")));
    const gadgets = [...objects.keys()].filter((k) => k.includes("/gadgets/")).sort();
    expect(await keys("/registry/example.com/gadgets/", "spec.size=1")).toEqual(gadgets);
  });

  test("a CRD created after its resources, changed, deleted: used from the next request on", async () => {
    const prefix = "/registry/example.org/things/";
    const all = [...objects.keys()].filter((k) => k.startsWith(prefix)).sort();
    expect(await keys(prefix, "spec.shape=round")).toEqual(all);
    await putCrd(THINGS);
    const round = expected(prefix, "", "spec.shape=round");
    expect(round.length).toBe(3);
    expect(await keys(prefix, "spec.shape=round")).toEqual(round);
    // the field declared no more
    await putCrd({ ...THINGS, versions: [{ name: "v1", fields: [".spec.other"] }] });
    expect(await keys(prefix, "spec.shape=round")).toEqual(all);
    await putCrd(THINGS);
    expect(await keys(prefix, "spec.shape=round")).toEqual(round);
    declare(undefined, "example.org/Thing");
    await del(crdKey(THINGS));
    expect(await keys(prefix, "spec.shape=round")).toEqual(all);
  });

  test("after a restart the stored CRDs are read at start", async () => {
    expect(await strata.terminate()).toBe(0);
    await strata.restart();
    client.close();
    client = new grpc.Client(strata.endpoint, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": -1 });
    const want = expected("/registry/example.com/widgets/", "", "spec.color=red");
    expect(await keys("/registry/example.com/widgets/", "spec.color=red")).toEqual(want);
  }, 60_000);
});

describe("watches over custom resources with CRD fields", () => {
  test("deliver exactly the changes whose new or previous object matches, once, in order", async () => {
    const fields = "spec.color=red";
    const prefix = "/registry/example.com/widgets/";
    const start = (await range({ key: enc(prefix), rangeEnd: prefixEnd(prefix), countOnly: true })).header!.revision;
    const w = rawWatch(strata.endpoint);
    w.send({ requestUnion: { case: "createRequest", value: { key: enc(prefix), rangeEnd: prefixEnd(prefix), startRevision: start + 1n, watchId: 1n, fieldSelector: fields } } });
    // the registry catches up with the CRDs when the watcher is placed
    await Bun.sleep(300);

    const changes: Array<{ key: string; rev: bigint; now?: K8sObject; before?: K8sObject }> = [];
    const change = async (key: string, next: K8sObject | undefined) => {
      const before = objects.get(key);
      const rev = next ? await put(next) : await del(key);
      changes.push({ key, rev, now: next, before });
    };
    // w-01 (red) turns blue: leaves; w-02 (blue) turns red: enters; w-03 (green) turns blue: stays out
    await change(keyOf(widget(1)), widget(1, { color: "blue" }));
    await change(keyOf(widget(2)), widget(2, { color: "red" }));
    await change(keyOf(widget(3)), widget(3, { color: "blue" }));
    // w-05 (red) changes within; w-09 (red) deleted while matching, w-10 (blue) while not
    await change(keyOf(widget(5)), { ...widget(5), labels: { tier: "changed" } });
    await change(keyOf(widget(9)), undefined);
    await change(keyOf(widget(10)), undefined);
    // created matching and not, one in the other served version
    await change(keyOf(widget(40)), widget(40, { color: "red", version: "v2" }));
    await change(keyOf(widget(41)), widget(41, { color: "blue" }));

    const matching = (o: K8sObject | undefined) => o !== undefined && referenceValue(o, "spec.color") === "red";
    const want = changes.filter((c) => matching(c.now) || matching(c.before)).map((c) => `${c.now ? "PUT" : "DELETE"} ${c.key} @${c.rev}`);
    expect(want).toHaveLength(5);
    const got = (rs: WatchResponse[]) => rs.filter((r) => r.watchId === 1n).flatMap((r) => r.events.map((e) => `${e.type === 0 ? "PUT" : "DELETE"} ${dec(e.kv!.key)} @${e.kv!.modRevision}`));
    const deadline = Date.now() + 15_000;
    while (got(w.responses).length < want.length && Date.now() < deadline) await Bun.sleep(50);
    await Bun.sleep(500); // nothing more may come
    w.close();
    expect(got(w.responses)).toEqual(want);
  }, 60_000);
});
