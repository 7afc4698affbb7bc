// Watch responses with pre-encoded events must be byte for byte what protobuf-es writes
// for the same response built the ordinary way, and the encoding of an event is made once.
import { expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WatchResponseSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { headerField, type WatchAnswer, watchFrame, watchResponse, type WatchResponseInit } from "../../src/api/watch-encoding.ts";
import { DELETE, type Event, PUT } from "../../src/mvcc/types.ts";

const bytes = (n: number, fill = 7) => new Uint8Array(n).fill(fill);
const kv = (key: string, value: Uint8Array, mod: bigint) => ({
  key: new TextEncoder().encode(key), createRevision: 3n, modRevision: mod, version: 2n, value, lease: 0n,
});
const header = { clusterId: 0xfedcba9876543210n, memberId: 1n, revision: 12345n, raftTerm: 2n };
const put: Event = { type: PUT, kv: kv("/registry/pods/a", bytes(300), 10n) };
const withPrev: Event = { type: PUT, kv: kv("/registry/pods/b", bytes(70_000), 11n), prevKv: kv("/registry/pods/b", bytes(5), 4n) };
const del: Event = { type: DELETE, kv: { ...kv("/registry/pods/c", new Uint8Array(0), 12n), createRevision: 0n, version: 0n } };

/** revisions past 2^53 and a lease: the varints' slow path */
const big: Event = { type: PUT, kv: { ...kv("/registry/pods/d", bytes(1), 2n ** 62n), createRevision: 2n ** 53n + 1n, lease: 0x7fff_ffff_ffffn } };

const cases: Array<[string, WatchResponseInit]> = [
  ["large revisions and a lease", { header, watchId: 4n, events: [big, del] }],
  ["created, no events", { header, watchId: 0n, created: true, events: [] }],
  ["events of every kind", { header, watchId: 7n, events: [put, withPrev, del] }],
  ["fragment", { header, watchId: 2n, fragment: true, events: [withPrev] }],
  ["canceled by compaction", { header, watchId: 3n, canceled: true, compactRevision: 99n, cancelReason: "compacted", events: [] }],
  ["progress for all watchers", { header, watchId: -1n, events: [] }],
  ["refused, with a reason beyond ASCII", { header, watchId: -1n, created: true, canceled: true, cancelReason: "strata: InvalidArgument: label „ä“", events: [] }],
  ["an empty header", { header: { clusterId: 0n, memberId: 0n, revision: 0n, raftTerm: 0n }, watchId: 0n, events: [put] }],
];

for (const [name, r] of cases) {
  test(`${name}: same bytes as toBinary`, () => {
    const expected = toBinary(WatchResponseSchema, create(WatchResponseSchema, r as never));
    const got = toBinary(WatchResponseSchema, watchResponse(r));
    expect(Buffer.from(got).equals(Buffer.from(expected))).toBe(true);
    // and a client decodes the events it was sent
    expect(fromBinary(WatchResponseSchema, got).events.map((e) => e.kv?.modRevision)).toEqual(r.events.map((e) => e.kv.modRevision));
  });
}

for (const [name, r] of cases) {
  test(`${name}: its gRPC frame written by hand is toBinary's, length-prefixed`, () => {
    const message = toBinary(WatchResponseSchema, create(WatchResponseSchema, r as never));
    const frame = watchFrame(r as WatchAnswer, headerField(r.header as typeof header));
    expect(frame[0]).toBe(0);
    expect(Buffer.from(frame).readUInt32BE(1)).toBe(message.length);
    expect(Buffer.from(frame.subarray(5)).equals(Buffer.from(message))).toBe(true);
  });
}

test("watchers sent one list of events get frames that differ only in the watch id, each toBinary's", () => {
  const events = [put, withPrev];
  const h = headerField(header);
  // each length of varint on both sides of the ids written without bigints (below 2^28), and negative ids
  const ids = [0n, 1n, 127n, 128n, 300n, 16383n, 16384n, 2n ** 21n - 1n, 2n ** 21n, 2n ** 28n - 1n, 2n ** 28n, 2n ** 40n, -1n, -(2n ** 63n)];
  for (const watchId of ids) {
    const message = toBinary(WatchResponseSchema, create(WatchResponseSchema, { header, watchId, events } as never));
    expect(Buffer.from(watchFrame({ watchId, events }, h).subarray(5)).equals(Buffer.from(message))).toBe(true);
  }
});

test("an event shared by several watchers is encoded once", () => {
  const a = watchResponse({ header, watchId: 1n, events: [put] });
  const b = watchResponse({ header, watchId: 2n, events: [put] });
  expect(a.$unknown![0]!.data).toBe(b.$unknown![0]!.data);
});
