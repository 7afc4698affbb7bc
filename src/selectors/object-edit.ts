// The metadata changes Kubernetes' garbage collector asks the apiserver for, made on a
// stored value in the encoding it was stored in (JSON, or the "k8s\0" protobuf envelope):
// dropping owner references (orphaning), dropping a finalizer, and beginning a deletion
// (deletionTimestamp, deletionGracePeriodSeconds 0 and, for a foreground or orphan
// deletion, its finalizer), as the apiserver writes them. Everything else is kept as stored.
import { eachField, isObject, type Json, LEN } from "./object.ts";

export interface MetaEdit {
  /** owner references to remove, by uid */
  dropOwners?: ReadonlySet<string>;
  /** a finalizer to remove */
  dropFinalizer?: string;
  /** begins the object's deletion at this time, adding the finalizer when given and missing */
  beginDeletion?: { at: Date; finalizer?: string };
}

const MAGIC = [0x6b, 0x38, 0x73, 0x00];
const utf8 = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** The value with its metadata edited; undefined when it holds no object this can edit. */
export function editMeta(value: Uint8Array, edit: MetaEdit): Uint8Array | undefined {
  try {
    if (MAGIC.every((b, i) => value[i] === b)) return editProtobuf(value, edit);
    return editJson(value, edit);
  } catch {
    return undefined;
  }
}

/** RFC 3339 in seconds, as metav1.Time marshals to JSON */
const rfc3339 = (at: Date) => at.toISOString().replace(/\.\d+Z$/, "Z");

function editJson(value: Uint8Array, edit: MetaEdit): Uint8Array | undefined {
  const text = utf8.decode(value);
  const o = JSON.parse(text) as Json;
  if (!isObject(o) || !isObject(o.metadata)) return undefined;
  const meta = o.metadata;
  if (edit.dropOwners && Array.isArray(meta.ownerReferences)) {
    const kept = meta.ownerReferences.filter((r) => !(isObject(r) && typeof r.uid === "string" && edit.dropOwners!.has(r.uid)));
    if (kept.length > 0) meta.ownerReferences = kept;
    else delete meta.ownerReferences;
  }
  if (edit.dropFinalizer !== undefined && Array.isArray(meta.finalizers)) {
    const kept = meta.finalizers.filter((f) => f !== edit.dropFinalizer);
    if (kept.length > 0) meta.finalizers = kept;
    else delete meta.finalizers;
  }
  if (edit.beginDeletion) {
    meta.deletionTimestamp = rfc3339(edit.beginDeletion.at);
    meta.deletionGracePeriodSeconds = 0;
    const f = edit.beginDeletion.finalizer;
    if (f !== undefined) {
      const list = Array.isArray(meta.finalizers) ? meta.finalizers : [];
      if (!list.includes(f)) meta.finalizers = [...list, f];
    }
  }
  // the apiserver's JSON ends with a newline (Go's json.Encoder): kept as stored
  return encoder.encode(JSON.stringify(o) + (text.endsWith("\n") ? "\n" : ""));
}

// ---- protobuf: runtime.Unknown raw=2 → the object, metadata=1 → ObjectMeta

interface Span {
  no: number;
  wire: number;
  /** where its tag starts */
  start: number;
  /** where its value starts and ends */
  valueStart: number;
  end: number;
}

function spans(buf: Uint8Array, start: number, end: number): Span[] {
  const out: Span[] = [];
  let at = start;
  eachField(buf, start, end, (no, wire, valueStart, valueEnd) => {
    out.push({ no, wire, start: at, valueStart, end: valueEnd });
    at = valueEnd;
  });
  return out;
}

/** the message's fields, with the one numbered `no` (a LEN field) replaced by `value`; undefined when it has none */
function replaceField(buf: Uint8Array, start: number, end: number, no: number, value: (s: Span) => Uint8Array): Uint8Array | undefined {
  const fields = spans(buf, start, end);
  const target = fields.find((f) => f.no === no && f.wire === LEN);
  if (!target) return undefined;
  return concat(fields.map((f) => (f === target ? lenField(no, value(f)) : buf.subarray(f.start, f.end))));
}

function editProtobuf(value: Uint8Array, edit: MetaEdit): Uint8Array | undefined {
  const body = MAGIC.length;
  let ok = true;
  const envelope = replaceField(value, body, value.length, 2, (raw) => {
    const object = replaceField(value, raw.valueStart, raw.end, 1, (meta) => editObjectMeta(value, meta.valueStart, meta.end, edit));
    if (!object) ok = false;
    return object ?? new Uint8Array(0);
  });
  if (!envelope || !ok) return undefined;
  return concat([value.subarray(0, body), envelope]);
}

// ObjectMeta: deletionTimestamp=9 (Time: seconds=1, nanos=2), deletionGracePeriodSeconds=10,
// ownerReferences=13 (OwnerReference: uid=4), finalizers=14
function editObjectMeta(buf: Uint8Array, start: number, end: number, edit: MetaEdit): Uint8Array {
  const text = (s: Span) => utf8.decode(buf.subarray(s.valueStart, s.end));
  const refUid = (s: Span) => {
    let uid = "";
    eachField(buf, s.valueStart, s.end, (no, wire, vs, ve) => {
      if (no === 4 && wire === LEN) uid = utf8.decode(buf.subarray(vs, ve));
    });
    return uid;
  };
  const fields = spans(buf, start, end).filter((s) => {
    if (s.no === 13 && edit.dropOwners && edit.dropOwners.has(refUid(s))) return false;
    if (s.no === 14 && edit.dropFinalizer !== undefined && text(s) === edit.dropFinalizer) return false;
    if ((s.no === 9 || s.no === 10) && edit.beginDeletion) return false;
    return true;
  });
  const parts = fields.map((s) => buf.subarray(s.start, s.end));
  const deletion = edit.beginDeletion;
  if (deletion) {
    const seconds = Math.floor(deletion.at.getTime() / 1000);
    parts.push(lenField(9, concat([varintField(1, seconds), varintField(2, 0)])), varintField(10, 0));
    const f = deletion.finalizer;
    if (f !== undefined && !fields.some((s) => s.no === 14 && text(s) === f)) parts.push(lenField(14, encoder.encode(f)));
  }
  return concat(parts);
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

function varintField(no: number, n: number): Uint8Array {
  return new Uint8Array([...varint(no * 8), ...varint(n)]);
}

function lenField(no: number, bytes: Uint8Array): Uint8Array {
  return concat([new Uint8Array([...varint(no * 8 + LEN), ...varint(bytes.length)]), bytes]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
