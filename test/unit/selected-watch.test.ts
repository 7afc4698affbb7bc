// A selector watcher's responses (src/keyspace/selected-watch.ts): an event passes when
// its new or previous object is kept; prev_kv reaches only a client that asked; a response
// whose events are all filtered out is not sent, one that says something else is.
import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { WatchCreateRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { placedRequest, selectedResponse } from "../../src/keyspace/selected-watch.ts";
import { DELETE, type Event, type KeyValue, PUT } from "../../src/mvcc/types.ts";
import { parseSelection } from "../../src/selectors/index.ts";
import { asJson, asProtobuf, encrypted } from "../support/k8s-objects.ts";

const kv = (key: string, value: Uint8Array, mod: bigint): KeyValue => ({
  key: new TextEncoder().encode(key), value, createRevision: 1n, modRevision: mod, version: 1n, lease: 0n,
});
const web = (name: string) => asProtobuf({ apiVersion: "v1", kind: "Pod", name, namespace: "a", labels: { app: "web" } });
const db = (name: string) => asJson({ apiVersion: "v1", kind: "Pod", name, namespace: "a", labels: { app: "db" } });
const selection = parseSelection("app=web", "")!;
const response = (events: Event[], extra = {}) => ({ header: { revision: 9n }, watchId: 1n, events, ...extra });

describe("selector watchers", () => {
  const events: Event[] = [
    { type: PUT, kv: kv("enters", web("enters"), 2n), prevKv: kv("enters", db("enters"), 1n) },
    { type: PUT, kv: kv("outside", db("outside"), 3n), prevKv: kv("outside", db("outside"), 1n) },
    { type: PUT, kv: kv("leaves", db("leaves"), 4n), prevKv: kv("leaves", web("leaves"), 1n) },
    { type: DELETE, kv: kv("gone", new Uint8Array(0), 5n), prevKv: kv("gone", web("gone"), 1n) },
    { type: DELETE, kv: kv("gone-other", new Uint8Array(0), 6n), prevKv: kv("gone-other", db("gone-other"), 1n) },
    { type: DELETE, kv: kv("unknown", new Uint8Array(0), 7n) },
    { type: PUT, kv: kv("created", web("created"), 8n) },
    { type: PUT, kv: kv("sealed", encrypted("x"), 9n), prevKv: kv("sealed", db("sealed"), 1n) },
  ];
  const keys = (r: ReturnType<typeof selectedResponse>) => r!.events.map((e) => new TextDecoder().decode(e.kv.key));

  test("new or previous object kept; undecidable deletes and undecodable values kept", () => {
    const r = selectedResponse({ selection, prevKv: true, fragment: false }, response(events));
    expect(keys(r)).toEqual(["enters", "leaves", "gone", "unknown", "created", "sealed"]);
    expect(r!.events.filter((e) => e.prevKv).length).toBe(4);
  });
  test("prev_kv only when asked", () => {
    const r = selectedResponse({ selection, prevKv: false, fragment: false }, response(events));
    expect(r!.events.every((e) => e.prevKv === undefined)).toBe(true);
    expect(keys(r)).toHaveLength(6);
  });
  test("nothing selected: not sent, unless it says something else", () => {
    const w = { selection, prevKv: false, fragment: false };
    expect(selectedResponse(w, response([events[1]!, events[4]!]))).toBeUndefined();
    expect(selectedResponse(w, response([]))).toEqual(response([]));
    expect(selectedResponse(w, response([events[1]!], { canceled: true }))?.events).toEqual([]);
  });
  test("custom resources' fields: evaluated with the CRD lookup while it is known, kept without", () => {
    const widget = (name: string, color: string) => asJson({ apiVersion: "example.com/v1", kind: "Widget", name, namespace: "a", body: { spec: { color } } });
    const changes: Event[] = [
      { type: PUT, kv: kv("red", widget("red", "red"), 2n) },
      { type: PUT, kv: kv("blue", widget("blue", "blue"), 3n), prevKv: kv("blue", widget("blue", "green"), 1n) },
      { type: PUT, kv: kv("turned", widget("turned", "blue"), 4n), prevKv: kv("turned", widget("turned", "red"), 1n) },
    ];
    const color = parseSelection("", "spec.color=red")!;
    let known = true;
    const w = { selection: color, prevKv: false, fragment: false, custom: () => (known ? () => ({ path: ["spec", "color"], absentIsEmpty: true }) : undefined) };
    expect(keys(selectedResponse(w, response(changes)))).toEqual(["red", "turned"]);
    known = false;
    expect(keys(selectedResponse(w, response(changes)))).toEqual(["red", "blue", "turned"]);
  });
  test("the placed request asks for previous values and keeps the selectors here", () => {
    const c = create(WatchCreateRequestSchema, { key: new Uint8Array([1]), fragment: true, labelSelector: "a", fieldSelector: "b=c" });
    expect(placedRequest(c)).toMatchObject({ prevKv: true, fragment: false, labelSelector: "", fieldSelector: "" });
  });
});
