// A label and a field selector together, applied to stored values. The rule strata keeps:
// a selector answers a superset, never fewer objects than match — a value it cannot
// decode (an encrypted one, foreign bytes) or a field it cannot evaluate keeps the object.
// A requirement that is known to fail drops it, whatever else is unknown: the selector is
// a conjunction. A custom resource's fields beyond metadata are known only through a lookup
// the caller passes (its CRD's selectable fields); without one they cannot be evaluated.
import { type CustomFieldLookup, customFieldText } from "./custom-fields.ts";
import { decodeObject, type ObjectView } from "./object.ts";
import { type FieldTerm, type LabelRequirement, parseFieldSelector, parseLabelSelector } from "./parse.ts";

export interface Selection {
  labels: LabelRequirement[];
  fields: FieldTerm[];
}

/**
 * The selection a request asks for, or undefined when it selects everything (both
 * selectors empty). Throws a SelectorError for a malformed one.
 */
export function parseSelection(labelSelector: string, fieldSelector: string): Selection | undefined {
  const labels = parseLabelSelector(labelSelector);
  const fields = parseFieldSelector(fieldSelector);
  return labels.length === 0 && fields.length === 0 ? undefined : { labels, fields };
}

/** decoded values, shared while the bytes live (one event is checked for every watcher) */
const decoded = new WeakMap<Uint8Array, ObjectView | "absent" | undefined>();

function objectOf(value: Uint8Array): ObjectView | "absent" | undefined {
  if (decoded.has(value)) return decoded.get(value);
  const o = decodeObject(value);
  decoded.set(value, o);
  return o;
}

/** Whether a stored value is kept: it matches, or it cannot be told. An empty value (a deleted key's) holds no object and is not kept. */
export function selects(s: Selection, value: Uint8Array, custom?: CustomFieldLookup): boolean {
  const o = objectOf(value);
  if (o === "absent") return false;
  if (o === undefined) return true;
  return matches(s, o, custom) !== false;
}

/** true, false, or undefined when some requirement cannot be evaluated and none fails */
export function matches(s: Selection, o: ObjectView, custom?: CustomFieldLookup): boolean | undefined {
  let unknown = false;
  for (const r of s.labels) if (!labelMatches(r, o.labels)) return false;
  for (const t of s.fields) {
    const v = fieldOf(o, t.field, custom);
    if (v === undefined) unknown = true;
    else if ((v === t.value) !== (t.op === "=")) return false;
  }
  return unknown ? undefined : true;
}

/** Whether the selection names a field beyond metadata's: only then can a custom resource's CRD matter. */
export function namesOtherFields(s: Selection): boolean {
  return s.fields.some((t) => t.field !== "metadata.name" && t.field !== "metadata.namespace");
}

/** a field of the object's own kind, else one its CRD declares */
function fieldOf(o: ObjectView, name: string, custom: CustomFieldLookup | undefined): string | undefined {
  const v = o.field(name);
  if (v !== undefined || custom === undefined) return v;
  const f = custom(o.apiVersion, o.kind, name);
  return f && customFieldText(o, f);
}

function labelMatches(r: LabelRequirement, labels: ReadonlyMap<string, string>): boolean {
  const v = labels.get(r.key);
  switch (r.op) {
    case "exists":
      return v !== undefined;
    case "!":
      return v === undefined;
    case "=":
    case "in":
      return v !== undefined && r.values.includes(v);
    case "!=":
    case "notin":
      return v === undefined || !r.values.includes(v);
    case ">":
    case "<": {
      // the label must hold an integer to compare
      if (v === undefined || !/^[-+]?[0-9]+$/.test(v)) return false;
      const [have, bound] = [BigInt(v), BigInt(r.values[0]!)];
      return r.op === ">" ? have > bound : have < bound;
    }
  }
}
