// Kubernetes objects as kube-apiserver stores them, read and written back by strata's own
// services: JSON (custom resources; apiextensions-apiserver stores them with its JSON
// codec), or the protobuf envelope — "k8s\0", then a runtime.Unknown (typeMeta=1
// {apiVersion=1, kind=2}, raw=2, contentEncoding=3, contentType=4) whose raw bytes are the
// object: JSON when contentType says so, else the built-in's protobuf (Secrets by default).
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

const MAGIC = new Uint8Array([0x6b, 0x38, 0x73, 0x00]);
const utf8 = new TextDecoder("utf-8", { fatal: true });

export type JsonObject = { [k: string]: unknown };

/** A stored JSON object, and how to store a changed copy of it in the same encoding. */
export interface StoredJson {
  object: JsonObject;
  encode(o: JsonObject): Uint8Array;
}

interface Envelope {
  apiVersion: string;
  kind: string;
  raw: Uint8Array;
  contentEncoding: string;
  contentType: string;
}

function isEnveloped(value: Uint8Array): boolean {
  return value.length >= MAGIC.length && MAGIC.every((b, i) => value[i] === b);
}

function readEnvelope(value: Uint8Array): Envelope | undefined {
  const e: Envelope = { apiVersion: "", kind: "", raw: new Uint8Array(0), contentEncoding: "", contentType: "" };
  const r = new BinaryReader(value.subarray(MAGIC.length));
  while (r.pos < r.len) {
    const [no, wire] = r.tag();
    if (wire !== WireType.LengthDelimited) {
      r.skip(wire);
      continue;
    }
    const bytes = r.bytes();
    if (no === 1) {
      const t = new BinaryReader(bytes);
      while (t.pos < t.len) {
        const [tno, twire] = t.tag();
        if (twire !== WireType.LengthDelimited) t.skip(twire);
        else if (tno === 1) e.apiVersion = t.string();
        else if (tno === 2) e.kind = t.string();
        else t.skip(twire);
      }
    } else if (no === 2) e.raw = bytes;
    else if (no === 3) e.contentEncoding = utf8.decode(bytes);
    else if (no === 4) e.contentType = utf8.decode(bytes);
  }
  return e;
}

function writeEnvelope(e: Envelope): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(e.apiVersion).tag(2, WireType.LengthDelimited).string(e.kind).join();
  w.tag(2, WireType.LengthDelimited).bytes(e.raw);
  if (e.contentEncoding) w.tag(3, WireType.LengthDelimited).string(e.contentEncoding);
  if (e.contentType) w.tag(4, WireType.LengthDelimited).string(e.contentType);
  const body = w.finish();
  const out = new Uint8Array(MAGIC.length + body.length);
  out.set(MAGIC);
  out.set(body, MAGIC.length);
  return out;
}

function parseJson(bytes: Uint8Array): JsonObject | undefined {
  const o: unknown = JSON.parse(utf8.decode(bytes));
  return typeof o === "object" && o !== null && !Array.isArray(o) ? (o as JsonObject) : undefined;
}

/** The JSON object a stored value holds (plain, or in the envelope); undefined for anything else. */
export function readStoredJson(value: Uint8Array): StoredJson | undefined {
  try {
    if (isEnveloped(value)) {
      const e = readEnvelope(value);
      if (!e || e.contentEncoding !== "" || (e.contentType !== "application/json" && e.raw[0] !== 0x7b)) return undefined;
      const object = parseJson(e.raw);
      if (!object) return undefined;
      const newline = e.raw.at(-1) === 0x0a ? "\n" : "";
      return { object, encode: (o) => writeEnvelope({ ...e, raw: new TextEncoder().encode(JSON.stringify(o) + newline) }) };
    }
    const object = parseJson(value);
    if (!object) return undefined;
    // kube-apiserver's JSON encoder ends a stored object with a newline; keep the shape
    const newline = value.at(-1) === 0x0a ? "\n" : "";
    return { object, encode: (o) => new TextEncoder().encode(JSON.stringify(o) + newline) };
  } catch {
    return undefined;
  }
}

/**
 * A Secret's data, file name → bytes, from its JSON (base64 values) or its protobuf form
 * (k8s.io/api core/v1 Secret: data=2, a map of key=1 → value=2); undefined when the value
 * is no Secret strata can read (encrypted at rest: "k8s:enc:…").
 */
export function secretData(value: Uint8Array): Map<string, Uint8Array> | undefined {
  const out = new Map<string, Uint8Array>();
  try {
    if (isEnveloped(value)) {
      const e = readEnvelope(value);
      if (!e || e.contentEncoding !== "" || e.kind !== "Secret") return undefined;
      if (e.contentType === "application/json" || e.raw[0] === 0x7b) return secretData(e.raw);
      const r = new BinaryReader(e.raw);
      while (r.pos < r.len) {
        const [no, wire] = r.tag();
        if (no !== 2 || wire !== WireType.LengthDelimited) {
          r.skip(wire);
          continue;
        }
        const entry = new BinaryReader(r.bytes());
        let k = "", v = new Uint8Array(0);
        while (entry.pos < entry.len) {
          const [eno, ewire] = entry.tag();
          if (ewire !== WireType.LengthDelimited) entry.skip(ewire);
          else if (eno === 1) k = entry.string();
          else if (eno === 2) v = entry.bytes().slice();
          else entry.skip(ewire);
        }
        out.set(k, v);
      }
      return out;
    }
    const o = parseJson(value);
    if (!o || o.kind !== "Secret") return undefined;
    const data = (o.data ?? {}) as Record<string, unknown>;
    for (const [k, v] of Object.entries(data)) if (typeof v === "string") out.set(k, new Uint8Array(Buffer.from(v, "base64")));
    return out;
  } catch {
    return undefined;
  }
}
