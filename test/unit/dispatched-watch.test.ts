// One client stream's watchers across keyspaces: ids are the stream's, a range spanning
// keyspaces is refused, progress is answered per watcher once the stream spans several;
// a selector watcher uses the CRDs known when it was placed.
import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { type WatchCreateRequest, WatchCreateRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Keyspace, WatchResponseOut, WatchSession, WatchStream } from "../../src/keyspace/contract.ts";
import type { CustomFieldSource } from "../../src/keyspace/crd-registry.ts";
import { DispatchedWatch, type WatchRoutes } from "../../src/keyspace/dispatched-watch.ts";
import { EtcdError } from "../../src/mvcc/errors.ts";
import { type KeyRange, type KeyValue, PUT } from "../../src/mvcc/types.ts";
import { asJson } from "../support/k8s-objects.ts";

const b = (s: string) => new TextEncoder().encode(s);

/** a keyspace whose sessions record what they are asked */
class Recorder implements WatchSession {
  closed = false;
  readonly created: bigint[] = [];
  readonly progress: boolean[] = [];
  constructor(readonly stream: WatchStream) {}
  create(c: WatchCreateRequest, id = c.watchId): void {
    this.created.push(id);
    this.stream.send({ header: { revision: 1n }, watchId: id, created: true, events: [] }, false);
  }
  cancel(id: bigint): void {
    this.stream.forget(id);
  }
  requestProgress(each = false): void {
    this.progress.push(each);
  }
  close(): void {
    this.closed = true;
  }
}

function fakeKeyspace(): Keyspace & { sessions: Recorder[] } {
  const sessions: Recorder[] = [];
  return {
    sessions,
    watch(stream: WatchStream) {
      const s = new Recorder(stream);
      sessions.push(s);
      return s;
    },
  } as unknown as Keyspace & { sessions: Recorder[] };
}

function setup(customFields?: CustomFieldSource) {
  const a = fakeKeyspace(), e = fakeKeyspace();
  const routes: WatchRoutes = {
    latestRevision: 7n,
    home: a,
    customFields,
    memberFor(ranges: KeyRange[]) {
      const first = new TextDecoder().decode(ranges[0]!.start);
      if (ranges[0]!.end === undefined) throw new EtcdError("FailedPrecondition", "strata: watch spans backends db and etcd");
      return first.startsWith("e") ? e : a;
    },
  };
  const sent: Array<{ resp: WatchResponseOut; fragmentable: boolean }> = [];
  const stream: WatchStream = { send: (resp, fragmentable) => void sent.push({ resp, fragmentable }), forget: () => {}, congested: () => false, drained: async () => {} };
  return { a, e, sent, session: new DispatchedWatch(routes, stream) };
}

const watch = (key: string, watchId = 0n, rangeEnd = new Uint8Array(0)) => create(WatchCreateRequestSchema, { key: b(key), rangeEnd, watchId });

describe("a client stream's watchers across keyspaces", () => {
  test("ids are handed out across keyspaces, each watcher placed where its range routes", () => {
    const { a, e, session } = setup();
    session.create(watch("a1"));
    session.create(watch("e1"));
    session.create(watch("a2"));
    expect(a.sessions[0]!.created).toEqual([0n, 2n]);
    expect(e.sessions[0]!.created).toEqual([1n]);
  });

  test("an id another keyspace holds is refused; within one keyspace, that keyspace decides", () => {
    const { a, e, sent, session } = setup();
    session.create(watch("a1", 5n));
    session.create(watch("e1", 5n));
    expect(e.sessions).toHaveLength(0);
    expect(sent.at(-1)!.resp).toMatchObject({ watchId: -1n, canceled: true, cancelReason: "mvcc: duplicate watch ID provided on the WatchStream", header: { revision: 7n } });
    session.create(watch("a2", 5n));
    expect(a.sessions[0]!.created).toEqual([5n, 5n]);
  });

  test("a range spanning keyspaces is refused with the reason", () => {
    const { sent, session } = setup();
    session.create(watch("a", 0n, new Uint8Array([0])));
    expect(sent.at(-1)!.resp).toMatchObject({ watchId: -1n, created: true, canceled: true, cancelReason: "strata: watch spans backends db and etcd" });
  });

  test("progress: the home keyspace answers an empty stream; watchers in several keyspaces get one answer each", () => {
    const { a, e, session } = setup();
    session.requestProgress();
    expect(a.sessions[0]!.progress).toEqual([false]);
    session.create(watch("e1"));
    session.requestProgress();
    expect(e.sessions[0]!.progress).toEqual([false]);
    session.create(watch("a1"));
    session.requestProgress();
    expect(a.sessions[0]!.progress).toEqual([false, true]);
    expect(e.sessions[0]!.progress).toEqual([false, true]);
  });

  test("a canceled watcher's id is free again, and closing closes every keyspace's session", () => {
    const { a, e, session } = setup();
    session.create(watch("a1", 3n));
    session.cancel(3n);
    session.create(watch("e1", 3n));
    expect(e.sessions[0]!.created).toEqual([3n]);
    session.close();
    expect(a.sessions[0]!.closed && e.sessions[0]!.closed).toBe(true);
  });

  test("a selector on other fields than metadata's marks the CRDs when placed and filters with them once known", () => {
    const asked: Array<[string, bigint]> = [];
    let known = 0n;
    const source: CustomFieldSource = {
      mark: () => (asked.push(["mark", 12n]), 12n),
      ready: async (mark) => (asked.push(["ready", mark]), undefined),
      lookup: (mark) => (asked.push(["lookup", mark]), known >= mark ? () => ({ path: ["spec", "color"], absentIsEmpty: true }) : undefined),
    };
    const { a, sent, session } = setup(source);
    session.create(create(WatchCreateRequestSchema, { key: b("a/"), rangeEnd: b("a0"), watchId: 1n, fieldSelector: "metadata.name=x" }));
    expect(asked).toEqual([]);
    session.create(create(WatchCreateRequestSchema, { key: b("a/"), rangeEnd: b("a0"), watchId: 2n, fieldSelector: "spec.color=red" }));
    expect(asked).toEqual([["mark", 12n], ["ready", 12n]]);
    const widget = (color: string): KeyValue => ({
      key: b("a/w"), value: asJson({ apiVersion: "example.com/v1", kind: "Widget", name: "w", namespace: "n", body: { spec: { color } } }), createRevision: 1n, modRevision: 13n, version: 1n, lease: 0n,
    });
    const deliver = () => a.sessions[0]!.stream.send({ header: { revision: 13n }, watchId: 2n, events: [{ type: PUT, kv: widget("blue") }] }, false);
    const delivered = () => sent.filter((s) => s.resp.watchId === 2n && s.resp.events.length > 0).length;
    deliver();
    expect(delivered()).toBe(1); // the registry is behind: the superset
    known = 12n;
    deliver();
    expect(delivered()).toBe(1); // known now: blue is not red
    expect(asked.at(-1)).toEqual(["lookup", 12n]);
  });
});
