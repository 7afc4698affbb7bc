// Custom resources' selectable fields, as their CRDs declare them (a version's
// `selectableFields[].jsonPath`, Kubernetes 1.30 and later). A field is named by its JSON
// path without the leading dot (`.spec.color` is selected as `spec.color`), and its value
// is what the path holds, as Go's fmt.Sprint prints it: a string as it is, a boolean
// "true"/"false", an integer in decimal; an absent or null field is "". Which fields an
// object has is not known here (the keyspace keeps the CRDs): a lookup tells.
import { isObject, type Json, type ObjectView } from "./object.ts";

export interface CustomField {
  /** the JSON path's steps: `.spec.color` → ["spec", "color"] */
  path: readonly string[];
  /** false when the apiserver may give an absent field a value (a schema default on its path): absence then says nothing */
  absentIsEmpty: boolean;
}

/** A custom resource's field by the object's apiVersion and kind and the selector's field name; undefined when not known. */
export type CustomFieldLookup = (apiVersion: string, kind: string, field: string) => CustomField | undefined;

/** a step Kubernetes' JSON path parser reads as a plain field name (others: not evaluated) */
const STEP = /^[A-Za-z0-9_-]+$/;

/**
 * The steps of a selectable field's JSON path, or undefined for one strata does not
 * evaluate. Kubernetes allows only `.a.b…` (no array notation), never under metadata.
 */
export function selectablePath(jsonPath: string): string[] | undefined {
  if (!jsonPath.startsWith(".")) return undefined;
  const steps = jsonPath.slice(1).split(".");
  if (steps[0] === "metadata" || !steps.every((s) => STEP.test(s))) return undefined;
  return steps;
}

/** The string a selector compares the field with, or undefined when it cannot be told. */
export function customFieldText(o: ObjectView, f: CustomField): string | undefined {
  let v: Json | undefined = o.json;
  if (v === undefined) return undefined; // not stored as JSON: no custom resource
  for (const step of f.path) {
    if (v === null || v === undefined) break;
    // a value where the schema has an object cannot have been stored by the apiserver
    if (!isObject(v)) return undefined;
    v = Object.hasOwn(v, step) ? v[step] : undefined;
  }
  if (v === null || v === undefined) return f.absentIsEmpty ? "" : undefined;
  if (typeof v === "string") return v;
  if (typeof v === "boolean") return String(v);
  // Go reads JSON integers as int64; beyond 2^53 JavaScript has lost digits
  if (typeof v === "number" && Number.isSafeInteger(v)) return String(v);
  return undefined;
}
