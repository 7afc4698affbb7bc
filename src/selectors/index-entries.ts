// What a database indexes of a stored value so it can apply selectors itself (the SQL
// backends' selector index): the object's labels (key → value) and the fields a field
// selector can name on it (field → the string Kubernetes compares), each list packed into
// one text that a database searches with a substring test; or "opaque" for a value that
// cannot be decoded (encrypted, foreign bytes), which every selection keeps; or nothing
// for a value holding no object (a deleted key's). Index text is bounded and never holds
// the packing's separators: a longer or odd name or value is stored as its SHA-256, so
// equality (all a selector compares, but for > and <) still holds and every index fits
// its column.
import { createHash } from "node:crypto";
import { decodeObject } from "./object.ts";
import type { Selection } from "./selection.ts";

/** longest index text stored as it is, in UTF-8 bytes */
const INDEX_TEXT_BYTES = 128;
const encoder = new TextEncoder();
/** what a stored name or value may not hold: the packing's separators, and the hash mark */
const RESERVED = /[\n\t\u0001]/;

/** A name or value as the index stores it: itself when short and plain, else "\u0001" + its SHA-256 in hex. */
export function indexText(s: string): string {
  if (!RESERVED.test(s) && (s.length * 3 <= INDEX_TEXT_BYTES || encoder.encode(s).length <= INDEX_TEXT_BYTES)) return s;
  return `\u0001${createHash("sha256").update(s).digest("hex")}`;
}

/** The packed text of one entry: every entry of a list is "\n" + name + "\t" + value, and the list ends with "\n". */
export const packedEntry = (name: string, value: string) => `\n${indexText(name)}\t${indexText(value)}\n`;
/** what a packed list holds where it has an entry of this name, whatever its value */
export const packedName = (name: string) => `\n${indexText(name)}\t`;

export type IndexEntries =
  | {
    /**
     * the label names and values, in index text, then the ownership entries (UID_ENTRY,
     * OWNER_ENTRY), packed (labelEntries lists them)
     */
    packedLabels: string;
    /** the fields packed */
    packedFields: string;
  }
  | "opaque"
  | undefined;

/**
 * Entries beside the labels for the storage-side garbage collector (src/mvcc/auto-gc.ts):
 * the object's own uid, and each uid its ownerReferences name. No label key can be
 * either name (a label key starts with an alphanumeric), so no selector ever meets them.
 */
export const UID_ENTRY = "@uid";
export const OWNER_ENTRY = "@owner";

/** each field name's start of a packed entry, made once (every write of an object packs them) */
const fieldPrefixes = new Map<string, string>();
function fieldPrefix(field: string): string {
  let p = fieldPrefixes.get(field);
  if (p === undefined) fieldPrefixes.set(field, (p = `\n${indexText(field)}\t`));
  return p;
}

/**
 * The entries of a stored value: undefined when it holds no object. Packed as they are
 * read, without a list of pairs between (every write of an object with the index is
 * packed, and most never need the pairs: SQLite's label rows come from the packed text).
 */
export function indexEntries(value: Uint8Array): IndexEntries {
  const o = decodeObject(value);
  if (o === "absent") return undefined;
  if (o === undefined) return "opaque";
  let packedLabels = "\n";
  for (const [k, v] of o.labels) packedLabels += `${indexText(k)}\t${indexText(v)}\n`;
  const { uid, owners } = o.ownership;
  if (uid !== "") packedLabels += `${UID_ENTRY}\t${indexText(uid)}\n`;
  for (let i = 0; i < owners.length; i++) {
    const u = owners[i]!.uid;
    // each owner once (an object naming one owner twice is rare)
    if (!owners.some((r, j) => j < i && r.uid === u)) packedLabels += `${OWNER_ENTRY}\t${indexText(u)}\n`;
  }
  let packedFields = `${fieldPrefix("metadata.name")}${indexText(o.name)}${fieldPrefix("metadata.namespace")}${indexText(o.namespace)}`;
  for (const f of o.selectable) {
    const v = o.field(f);
    if (v !== undefined) packedFields += `${fieldPrefix(f)}${indexText(v)}`;
  }
  return { packedLabels, packedFields: `${packedFields}\n` };
}

/** The (name, value) entries of packed labels, in order (a line without a tab is none). */
export function labelEntries(packed: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let start = 0; start < packed.length;) {
    let end = packed.indexOf("\n", start);
    if (end < 0) end = packed.length;
    const tab = packed.indexOf("\t", start);
    if (tab >= 0 && tab < end) out.push([packed.slice(start, tab), packed.slice(tab + 1, end)]);
    start = end + 1;
  }
  return out;
}

/**
 * Whether the index answers this selection exactly as `selects` would, for every value:
 * labels compared for (in)equality and presence, and fields every decodable object has
 * an entry for. Otherwise (a numeric comparison, a kind-specific field that another kind
 * in the range may answer differently) the index narrows and the values are checked.
 */
export function indexAnswersExactly(s: Selection): boolean {
  return s.labels.every((r) => r.op !== ">" && r.op !== "<") &&
    s.fields.every((t) => t.field === "metadata.name" || t.field === "metadata.namespace");
}
