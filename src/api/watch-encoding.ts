// Watch responses whose events are encoded once for all watchers. Every watcher that sees
// a revision gets the same Event objects from the hub (src/keyspace/watch-hub.ts); each event's
// bytes are kept beside the object while it lives, and each watcher's response carries
// them as already-encoded occurrences of field 11 (`events`). protobuf-es writes a message's
// unknown fields after its known ones, and `events` has the highest field number of
// WatchResponse, so the bytes equal toBinary's of the whole response (a unit test
// compares them). A stream served on strata's own path (watch-call.ts) skips the message
// object altogether: watchFrame writes the response's gRPC frame by hand from the
// revision's header and the events' bytes, both made once for all watchers sent them.
import { create, type MessageInitShape, type UnknownField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { type WatchResponse, WatchResponseSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { encodeEvent, intField, ProtoWriter, varintSize } from "../mvcc/kv-encoding.ts";
import type { Event } from "../mvcc/types.ts";
import { grpcFrameBuffer, headerSize, type RangeAnswer, writeHeader } from "./range-frame.ts";

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

/** a response as watchFrame writes it: the fields of WatchResponse but its header */
export interface WatchAnswer {
  watchId: bigint;
  created?: boolean;
  canceled?: boolean;
  compactRevision?: bigint;
  cancelReason?: string;
  fragment?: boolean;
  events: Event[];
}

const utf8 = new TextEncoder();
/** the tag of WatchResponse.events */
const EVENTS_TAG = (EVENTS_FIELD << 3) | WireType.LengthDelimited;

/**
 * A response header as field 1 of a response, tag and length included: every watcher
 * sent a revision gets the same header, so the caller encodes it once (watch.ts).
 */
export function headerField(h: RangeAnswer["header"]): Uint8Array {
  const size = headerSize(h);
  const w = new ProtoWriter(new Uint8Array(1 + varintSize(BigInt(size)) + size));
  writeHeader(w, h, size);
  return w.buf;
}

/** each list of events as occurrences of field 11, for as long as the list is alive */
const encodedLists = new WeakMap<Event[], Uint8Array>();
/** the list encoded last: the watchers of one write ask for it one after another */
let lastList: Event[] | undefined;
let lastListBytes: Uint8Array | undefined;

/**
 * The events as occurrences of field 11. The hub hands every watcher of a range with the
 * same options the same list (watch-hub.ts), so a write to n watchers is encoded once, not
 * n times.
 */
function eventsField(events: Event[]): Uint8Array {
  if (events === lastList) return lastListBytes!;
  let bytes = encodedLists.get(events);
  if (!bytes) {
    const parts = events.map(eventBytes);
    let size = 0;
    for (const e of parts) size += 1 + e.length;
    bytes = new Uint8Array(size);
    let pos = 0;
    for (const e of parts) {
      bytes[pos++] = EVENTS_TAG;
      bytes.set(e, pos);
      pos += e.length;
    }
    encodedLists.set(events, bytes);
  }
  lastList = events;
  lastListBytes = bytes;
  return bytes;
}

/** watch ids below this are written without bigint arithmetic (in at most four bytes) */
const SMALL_ID = 1n << 28n;

/**
 * The response's gRPC frame (flag byte, length, message) in one buffer, around a header
 * made by headerField; the bytes are exactly toBinary's. What differs between watchers of
 * one event is only the watch id: the rest is copied from bytes made once.
 */
export function watchFrame(r: WatchAnswer, header: Uint8Array): Uint8Array {
  if (r.events.length > 0 && !r.created && !r.canceled && !r.fragment && !r.cancelReason && !r.compactRevision && r.watchId >= 0n && r.watchId < SMALL_ID) {
    return eventsFrame(Number(r.watchId), eventsField(r.events), header);
  }
  const reason = r.cancelReason ? utf8.encode(r.cancelReason) : undefined;
  const compact = r.compactRevision ?? 0n;
  const events = r.events.length === 0 ? undefined : eventsField(r.events);
  const size = header.length + intField(r.watchId) + intField(compact) +
    (r.created ? 2 : 0) + (r.canceled ? 2 : 0) + (r.fragment ? 2 : 0) +
    (reason ? 1 + varintSize(BigInt(reason.length)) + reason.length : 0) + (events ? events.length : 0);
  const buf = grpcFrameBuffer(size);
  buf.set(header, 5);
  const w = new ProtoWriter(buf, 5 + header.length);
  w.int(0x10, r.watchId);
  if (r.created) flag(w, 0x18);
  if (r.canceled) flag(w, 0x20);
  w.int(0x28, compact);
  if (reason) {
    buf[w.pos++] = 0x32;
    w.bytes(reason);
  }
  if (r.fragment) flag(w, 0x38);
  if (events) buf.set(events, w.pos);
  return buf;
}

/** The frame of a response that is only a header, a watch id and events: what a write sends each watcher. */
function eventsFrame(id: number, events: Uint8Array, header: Uint8Array): Uint8Array {
  const idSize = id === 0 ? 0 : id < 0x80 ? 2 : id < 0x4000 ? 3 : id < 0x200000 ? 4 : 5;
  const size = header.length + idSize + events.length;
  const buf = grpcFrameBuffer(size);
  buf.set(header, 5);
  let pos = 5 + header.length;
  if (id !== 0) {
    buf[pos++] = 0x10;
    while (id >= 0x80) {
      buf[pos++] = (id & 0x7f) | 0x80;
      id >>>= 7;
    }
    buf[pos++] = id;
  }
  buf.set(events, pos);
  return buf;
}

/** a bool field that is true */
function flag(w: ProtoWriter, tag: number): void {
  w.buf[w.pos++] = tag;
  w.buf[w.pos++] = 1;
}
