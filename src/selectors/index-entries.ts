// What a database indexes of a stored value so it can apply selectors itself (the SQL
// backends' kv_label and kv_field tables): one entry per label (key → value) and per field
// a field selector can name on the object (field → the string Kubernetes compares), or
// one "opaque" label entry for a value that cannot be decoded (encrypted, foreign bytes),
// which every selection keeps. A value holding no object (a deleted key's) has no entry.
// Index text is bounded: a longer name or value is stored as its SHA-256, so equality
// (all a selector compares, but for > and <) still holds and every index fits its column.
import { createHash } from "node:crypto";
import { decodeObject } from "./object.ts";
import type { Selection } from "./selection.ts";

export type IndexEntry = readonly [name: string, value: string];

/** the entry of a value that cannot be decoded */
export const OPAQUE: IndexEntry = ["", ""];

/** longest index text stored as it is, in UTF-8 bytes */
export const INDEX_TEXT_BYTES = 128;
const encoder = new TextEncoder();

/** A name or value as the index stores it: itself when short, else "\u0001" + its SHA-256 in hex. */
export function indexText(s: string): string {
  // "\u0001" starts no label or field text Kubernetes accepts; hashing any that does keeps the mapping one-to-one
  if (s.length * 3 <= INDEX_TEXT_BYTES && !s.startsWith("\u0001")) return s;
  if (encoder.encode(s).length <= INDEX_TEXT_BYTES && !s.startsWith("\u0001")) return s;
  return `\u0001${createHash("sha256").update(s).digest("hex")}`;
}

export interface IndexEntries {
  labels: IndexEntry[];
  fields: IndexEntry[];
}

const NONE: IndexEntries = { labels: [], fields: [] };

/** The entries of a stored value, names and values already in index text. */
export function indexEntries(value: Uint8Array): IndexEntries {
  const o = decodeObject(value);
  if (o === "absent") return NONE;
  if (o === undefined) return { labels: [OPAQUE], fields: [] };
  const labels: IndexEntry[] = [], fields: IndexEntry[] = [];
  for (const [k, v] of o.labels) labels.push([indexText(k), indexText(v)]);
  for (const f of ["metadata.name", "metadata.namespace", ...o.selectable]) {
    const v = o.field(f);
    if (v !== undefined) fields.push([indexText(f), indexText(v)]);
  }
  return { labels, fields };
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
