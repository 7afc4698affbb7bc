// A stored Kubernetes object as a selector sees it: name, namespace, labels and its
// selectable fields, decoded from either encoding Kubernetes stores — JSON (custom
// resources; built-ins under --storage-media-type=application/json) or protobuf (the
// built-ins' default: "k8s\0", then a runtime.Unknown whose raw bytes are the object).
// Anything else (encrypted "k8s:enc:…" values, foreign bytes) cannot be decoded.
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { type SelectableField, selectableFields } from "./fields.ts";

export interface ObjectView {
  name: string;
  namespace: string;
  labels: ReadonlyMap<string, string>;
  /** a selectable field's value as Kubernetes compares it; undefined when it cannot be evaluated */
  field(name: string): string | undefined;
  /** the selectable fields of the object's kind beyond metadata.name and metadata.namespace */
  readonly selectable: readonly string[];
}

/** the protobuf envelope's magic */
const MAGIC = [0x6b, 0x38, 0x73, 0x00];
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The object a stored value holds; "absent" for an empty value (a deleted key's), undefined
 * when it cannot be decoded.
 */
export function decodeObject(value: Uint8Array): ObjectView | "absent" | undefined {
  if (value.length === 0) return "absent";
  try {
    if (MAGIC.every((b, i) => value[i] === b)) return decodeProtobuf(value.subarray(MAGIC.length));
    let i = 0;
    while (i < value.length && (value[i] === 0x20 || value[i] === 0x0a || value[i] === 0x0d || value[i] === 0x09)) i++;
    if (value[i] === 0x7b /* { */) return decodeJson(JSON.parse(utf8.decode(value)));
  } catch {
    // truncated protobuf, broken JSON, invalid UTF-8: cannot be decoded
  }
  return undefined;
}

// ---- JSON

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: Json | undefined): v is { [k: string]: Json } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function decodeJson(o: Json): ObjectView | undefined {
  if (!isObject(o)) return undefined;
  const meta = o.metadata ?? {};
  if (!isObject(meta)) return undefined;
  const str = (v: Json | undefined) => (v === undefined || v === null ? "" : typeof v === "string" ? v : undefined);
  const name = str(meta.name), namespace = str(meta.namespace);
  if (name === undefined || namespace === undefined) return undefined;
  const labels = new Map<string, string>();
  if (meta.labels !== undefined && meta.labels !== null) {
    if (!isObject(meta.labels)) return undefined;
    for (const [k, v] of Object.entries(meta.labels)) {
      if (typeof v !== "string") return undefined;
      labels.set(k, v);
    }
  }
  const fields = selectableFields(str(o.apiVersion) ?? "", str(o.kind) ?? "");
  return view(name, namespace, labels, fields, (f) => {
    let v: Json | undefined = o;
    for (const step of f.json) v = isObject(v) ? v[step] : undefined;
    if (v === undefined || v === null) return fieldText(f, undefined);
    return fieldText(f, typeof v === "string" || typeof v === "boolean" || typeof v === "number" ? v : undefined, true);
  });
}

// ---- protobuf

function decodeProtobuf(envelope: Uint8Array): ObjectView | undefined {
  // runtime.Unknown: typeMeta=1 {apiVersion=1, kind=2}, raw=2, contentEncoding=3, contentType=4
  let apiVersion = "", kind = "", raw: Uint8Array | undefined, encoding = "";
  for (const [no, r] of fieldsOf(envelope)) {
    if (no === 1) {
      for (const [tno, t] of fieldsOf(r.bytes())) {
        if (tno === 1) apiVersion = t.string();
        else if (tno === 2) kind = t.string();
        else t.skipLast();
      }
    } else if (no === 2) raw = r.bytes();
    else if (no === 3) encoding = r.string();
    else r.skipLast();
  }
  if (raw === undefined || encoding !== "") return undefined;
  const object = raw;
  // ObjectMeta: name=1, namespace=3, labels=11 (map entries key=1, value=2)
  let name = "", namespace = "";
  const labels = new Map<string, string>();
  for (const [no, r] of fieldsOf(object)) {
    if (no !== 1) {
      r.skipLast();
      continue;
    }
    for (const [mno, m] of fieldsOf(r.bytes())) {
      if (mno === 1) name = m.string();
      else if (mno === 3) namespace = m.string();
      else if (mno === 11) {
        let k = "", v = "";
        for (const [eno, e] of fieldsOf(m.bytes())) {
          if (eno === 1) k = e.string();
          else if (eno === 2) v = e.string();
          else e.skipLast();
        }
        labels.set(k, v);
      } else m.skipLast();
    }
  }
  return view(name, namespace, labels, selectableFields(apiVersion, kind), (f) => {
    try {
      return fieldText(f, protobufField(object, f));
    } catch {
      return undefined;
    }
  });
}

/** a field's value at its protobuf path: the last occurrence wins, as protobuf reads scalars; absent is undefined */
function protobufField(message: Uint8Array, f: SelectableField): string | boolean | number | undefined {
  let current = message;
  for (let depth = 0; depth < f.pb.length; depth++) {
    const want = f.pb[depth]!, last = depth === f.pb.length - 1;
    let found: Uint8Array | string | boolean | number | undefined;
    for (const [no, r] of fieldsOf(current)) {
      if (no !== want) r.skipLast();
      else if (!last) found = r.bytes();
      else if (f.type === "string") found = r.string();
      else if (f.type === "bool") found = r.bool();
      else found = r.int32();
    }
    if (found === undefined) return undefined;
    if (last) return found as string | boolean | number;
    current = found as Uint8Array;
  }
  return undefined;
}

/**
 * The fields of a protobuf message: each field number with a reader positioned at its
 * value, to read once or skip. Reading a value as a type its wire type cannot hold throws.
 */
function* fieldsOf(bytes: Uint8Array): Generator<[number, FieldReader]> {
  const reader = new BinaryReader(bytes, (b) => utf8.decode(b));
  while (reader.pos < reader.len) {
    const [no, wire] = reader.tag();
    const expect = (w: WireType) => {
      if (wire !== w) throw new Error(`protobuf field ${no}: wire type ${wire}, expected ${w}`);
    };
    yield [no, {
      bytes: () => (expect(WireType.LengthDelimited), reader.bytes()),
      string: () => (expect(WireType.LengthDelimited), reader.string()),
      bool: () => (expect(WireType.Varint), reader.bool()),
      int32: () => (expect(WireType.Varint), reader.int32()),
      skipLast: () => void reader.skip(wire, no),
    }];
  }
}

interface FieldReader {
  bytes(): Uint8Array;
  string(): string;
  bool(): boolean;
  int32(): number;
  skipLast(): void;
}

// ---- shared

/** the string Kubernetes compares for a field: absent fields are their zero value */
function fieldText(f: SelectableField, v: string | boolean | number | undefined, present = v !== undefined): string | undefined {
  if (!present) return f.type === "string" ? "" : f.type === "bool" ? "false" : "0";
  if (f.type === "string") return typeof v === "string" ? v : undefined;
  if (f.type === "bool") return typeof v === "boolean" ? String(v) : undefined;
  return typeof v === "number" && Number.isInteger(v) ? String(v) : undefined;
}

function view(
  name: string,
  namespace: string,
  labels: Map<string, string>,
  fields: Record<string, SelectableField> | undefined,
  read: (f: SelectableField) => string | undefined,
): ObjectView {
  const cache = new Map<string, string | undefined>();
  return {
    name,
    namespace,
    labels,
    selectable: fields ? Object.keys(fields) : [],
    field(field: string): string | undefined {
      if (field === "metadata.name") return name;
      if (field === "metadata.namespace") return namespace;
      const f = fields?.[field];
      if (!f) return undefined;
      if (!cache.has(field)) cache.set(field, read(f));
      return cache.get(field);
    },
  };
}
