// Watch responses whose events are encoded once for all watchers. Every watcher that sees
// a revision gets the same Event objects from the hub (src/keyspace/watch-hub.ts); each event's
// bytes are kept beside the object while it lives, and each watcher's response carries
// them as already-encoded occurrences of field 11 (`events`). protobuf-es writes a message's
// unknown fields after its known ones, and `events` has the highest field number of
// WatchResponse, so the bytes equal toBinary's of the whole response (a unit test
// compares them).
import { create, type MessageInitShape, type UnknownField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { type WatchResponse, WatchResponseSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { encodeEvent } from "../mvcc/kv-encoding.ts";
import type { Event } from "../mvcc/types.ts";

/** WatchResponse.events */
const EVENTS_FIELD = 11;

/** each event's length-prefixed bytes, for as long as the event object is alive */
const encoded = new WeakMap<Event, Uint8Array>();

function eventBytes(e: Event): Uint8Array {
  let bytes = encoded.get(e);
  if (!bytes) {
    bytes = encodeEvent(e);
    encoded.set(e, bytes);
  }
  return bytes;
}

/** a response as the watch service queues it: the fields of WatchResponse, with mvcc's events */
export type WatchResponseInit = Omit<Exclude<MessageInitShape<typeof WatchResponseSchema>, WatchResponse>, "events" | "$typeName"> & { events: Event[] };

/** The response as a message whose events are pre-encoded; Connect serializes it as it is. */
export function watchResponse(r: WatchResponseInit): WatchResponse {
  const { events, ...rest } = r;
  const msg = create(WatchResponseSchema, rest);
  if (events.length > 0) {
    msg.$unknown = events.map((e): UnknownField => ({ no: EVENTS_FIELD, wireType: WireType.LengthDelimited, data: eventBytes(e) }));
  }
  return msg;
}
