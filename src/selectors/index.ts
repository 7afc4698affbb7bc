// Kubernetes label and field selectors applied to stored objects (HariKube's
// storage-side filtering): parse a request's selectors, tell whether a stored value is
// kept. Pure: no strata layer, no I/O; the api validates with it, the keyspace filters
// (and keeps the CRDs whose selectable fields it passes in as a lookup). Also what the
// storage-side garbage collector (mvcc/auto-gc.ts) reads and edits of an object's metadata.
export { type CrdFields, decodeCrd } from "./crd.ts";
export { type CustomField, type CustomFieldLookup } from "./custom-fields.ts";
export { decodeObject, type ObjectView } from "./object.ts";
export { editMeta, type MetaEdit } from "./object-edit.ts";
export { type FieldTerm, type LabelRequirement, parseFieldSelector, parseLabelSelector, SelectorError } from "./parse.ts";
export { matches, namesOtherFields, parseSelection, type Selection, selects } from "./selection.ts";
export { indexAnswersExactly, type IndexEntries, indexEntries, indexText, labelEntries, OWNER_ENTRY, packedEntry, packedName, UID_ENTRY } from "./index-entries.ts";
