// A CustomResourceDefinition as it is stored, reduced to what field selectors need: the
// group and kind of its custom resources and, for each version, the selectable fields
// whose value strata can tell from an object stored in that version. kube-apiserver
// stores CRDs as JSON in apiextensions.k8s.io/v1beta1 (its storage codec for them is JSON,
// the version the more compact one); v1 is read too. v1beta1 may hold the fields, the
// schema and the conversion once for every version (spec.selectableFields,
// spec.validation) or per version, as v1 does.
//
// Kubernetes evaluates a field selector on the object converted to the version the client
// asked for; strata sees the stored object and not the version asked for. So a field is
// evaluated only where the stored object tells its value:
// - the stored object's own version declares the field (so its schema holds the path:
//   the apiserver would not prune it on read);
// - a conversion webhook may change any field: with one, a field that another version
//   declares too is not evaluated (the request may be in that version). Without one
//   ("None") versions differ only in apiVersion, and the same name is the same path;
// - an absent field is "" unless a schema default lies on its path in some version (the
//   apiserver defaults objects read from storage): then absence says nothing.
import { type CustomField, selectablePath } from "./custom-fields.ts";
import { isObject, type Json, type JsonObject } from "./object.ts";

export interface CrdFields {
  group: string;
  /** the custom resources' kind */
  kind: string;
  /** by version name: the fields strata evaluates on an object stored in it, by selector name */
  versions: Map<string, Map<string, CustomField>>;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The CRD a stored value holds, or undefined when it is none strata can read (not JSON, encrypted, another object). */
export function decodeCrd(value: Uint8Array): CrdFields | undefined {
  let o: Json;
  try {
    o = JSON.parse(utf8.decode(value)) as Json;
  } catch {
    return undefined;
  }
  if (!isObject(o) || o.kind !== "CustomResourceDefinition" || typeof o.apiVersion !== "string") return undefined;
  if (!o.apiVersion.startsWith("apiextensions.k8s.io/")) return undefined;
  const spec = o.spec;
  if (!isObject(spec) || typeof spec.group !== "string" || !isObject(spec.names) || typeof spec.names.kind !== "string") return undefined;

  // every version with what applies to it: its own, else the spec's (v1beta1)
  const listed = Array.isArray(spec.versions) ? spec.versions.filter(isObject) : typeof spec.version === "string" ? [{ name: spec.version }] : [];
  const versions = listed.filter((v) => typeof v.name === "string").map((v) => ({
    name: v.name as string,
    declared: declaredFields(v.selectableFields ?? spec.selectableFields),
    schema: schemaOf(v.schema) ?? schemaOf(spec.validation),
  }));
  const conversion = isObject(spec.conversion) ? spec.conversion.strategy : undefined;
  const webhook = conversion !== undefined && conversion !== "None";

  const out = new Map<string, Map<string, CustomField>>();
  for (const v of versions) {
    const fields = new Map<string, CustomField>();
    for (const [name, path] of v.declared) {
      if (webhook && versions.some((other) => other !== v && other.declared.has(name))) continue;
      fields.set(name, { path, absentIsEmpty: !versions.some((w) => defaultOnPath(w.schema, path)) });
    }
    out.set(v.name, fields);
  }
  return { group: spec.group, kind: spec.names.kind, versions: out };
}

/** a version's selectable fields strata can evaluate: selector name → path */
function declaredFields(list: Json | undefined): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (!Array.isArray(list)) return out;
  for (const f of list) {
    const path = isObject(f) && typeof f.jsonPath === "string" ? selectablePath(f.jsonPath) : undefined;
    if (path) out.set(path.join("."), path);
  }
  return out;
}

function schemaOf(validation: Json | undefined): JsonObject | undefined {
  return isObject(validation) && isObject(validation.openAPIV3Schema) ? validation.openAPIV3Schema : undefined;
}

/** whether the schema gives the field, or an object on the way to it, a default */
function defaultOnPath(schema: JsonObject | undefined, path: readonly string[]): boolean {
  let s: Json | undefined = schema;
  for (const step of path) {
    if (!isObject(s)) return false;
    const props: Json | undefined = s.properties;
    s = isObject(props) && Object.hasOwn(props, step) ? props[step] : s.additionalProperties;
    if (isObject(s) && s.default !== undefined) return true;
  }
  return false;
}
