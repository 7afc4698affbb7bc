// Custom resources' selectable fields (src/selectors/custom-fields.ts, crd.ts): JSON paths
// strata evaluates, values rendered as Kubernetes compares them, CRDs read in both stored
// shapes (v1beta1 with what all versions share held once, v1 per version), the fields that
// are not evaluated (another version's under a conversion webhook, absent ones a default
// may fill), and the matcher with and without a lookup.
import { describe, expect, test } from "bun:test";
import { customFieldText, selectablePath } from "../../src/selectors/custom-fields.ts";
import { type CrdFields, type CustomFieldLookup, decodeCrd, decodeObject, type ObjectView, parseSelection, selects } from "../../src/selectors/index.ts";
import { asJson, asProtobuf, type Crd, crdJson, encrypted } from "../support/k8s-objects.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const widget = (body: Record<string, unknown>, apiVersion = "example.com/v1") =>
  asJson({ apiVersion, kind: "Widget", name: "w", namespace: "a", body });
const view = (value: Uint8Array) => decodeObject(value) as ObjectView;

describe("selectable JSON paths", () => {
  test("dotted paths of plain names; the selector name is the path without its dot", () => {
    expect(selectablePath(".spec.color")).toEqual(["spec", "color"]);
    expect(selectablePath(".status.ready_count")).toEqual(["status", "ready_count"]);
    expect(selectablePath(".spec.my-field2")).toEqual(["spec", "my-field2"]);
  });
  test("array notation, metadata, no leading dot, empty steps: not evaluated", () => {
    for (const p of [".spec.items[0]", ".spec['color']", ".metadata.name", "spec.color", ".spec..color", ".", "", ".spec.a b"]) {
      expect(selectablePath(p), p).toBeUndefined();
    }
  });
});

describe("a field's value as Kubernetes compares it", () => {
  const field = (path: string, absentIsEmpty = true) => ({ path: path.split("."), absentIsEmpty });
  const text = (body: Record<string, unknown>, path: string, absentIsEmpty = true) => customFieldText(view(widget(body)), field(path, absentIsEmpty));

  test("strings as they are, booleans true/false, integers in decimal", () => {
    expect(text({ spec: { color: "red" } }, "spec.color")).toBe("red");
    expect(text({ spec: { color: "" } }, "spec.color")).toBe("");
    expect(text({ spec: { on: true } }, "spec.on")).toBe("true");
    expect(text({ spec: { on: false } }, "spec.on")).toBe("false");
    expect(text({ spec: { n: 42 } }, "spec.n")).toBe("42");
    expect(text({ spec: { n: -7 } }, "spec.n")).toBe("-7");
    expect(text({ spec: { n: 0 } }, "spec.n")).toBe("0");
  });
  test("absent or null: empty, unless a default may fill it", () => {
    expect(text({ spec: {} }, "spec.color")).toBe("");
    expect(text({}, "spec.color")).toBe("");
    expect(text({ spec: { color: null } }, "spec.color")).toBe("");
    expect(text({ spec: null }, "spec.color")).toBe("");
    expect(text({ spec: {} }, "spec.color", false)).toBeUndefined();
    expect(text({ spec: { color: "red" } }, "spec.color", false)).toBe("red");
  });
  test("what the apiserver cannot have stored cannot be told", () => {
    expect(text({ spec: { n: 1.5 } }, "spec.n")).toBeUndefined();
    expect(text({ spec: { n: 2 ** 60 } }, "spec.n")).toBeUndefined();
    expect(text({ spec: { color: { r: 1 } } }, "spec.color")).toBeUndefined();
    expect(text({ spec: { color: ["red"] } }, "spec.color")).toBeUndefined();
    expect(text({ spec: "flat" }, "spec.color")).toBeUndefined();
  });
  test("inherited names are not fields", () => {
    expect(text({ spec: {} }, "spec.constructor")).toBe("");
    expect(text({}, "toString")).toBe("");
  });
  test("an object not stored as JSON has none", () => {
    const pod = view(asProtobuf({ apiVersion: "v1", kind: "Pod", name: "p", namespace: "a" }));
    expect(customFieldText(pod, field("spec.nodeName"))).toBeUndefined();
  });
});

const fieldsOf = (crd: CrdFields | undefined, version: string) => Object.fromEntries([...(crd?.versions.get(version) ?? [])].map(([k, f]) => [k, f]));

describe("CRDs as stored", () => {
  const base: Crd = {
    group: "example.com",
    kind: "Widget",
    plural: "widgets",
    versions: [{ name: "v1", fields: [".spec.color", ".status.ready"], properties: { spec: { type: "object", properties: { color: { type: "string" } } } } }],
  };
  test("v1beta1 with the fields held once for every version, and v1 per version", () => {
    for (const storedAs of ["v1beta1", "v1"] as const) {
      const two: Crd = { ...base, storedAs, versions: [base.versions[0]!, { ...base.versions[0]!, name: "v2" }] };
      const crd = decodeCrd(crdJson(two));
      expect(crd?.group).toBe("example.com");
      expect(crd?.kind).toBe("Widget");
      for (const v of ["v1", "v2"]) {
        expect(fieldsOf(crd, v), `${storedAs} ${v}`).toEqual({
          "spec.color": { path: ["spec", "color"], absentIsEmpty: true },
          "status.ready": { path: ["status", "ready"], absentIsEmpty: true },
        });
      }
    }
  });
  test("fields differing per version; v1beta1 with a single spec.version", () => {
    const crd = decodeCrd(crdJson({ ...base, versions: [base.versions[0]!, { name: "v2", fields: [".spec.size"] }] }));
    expect(Object.keys(fieldsOf(crd, "v1"))).toEqual(["spec.color", "status.ready"]);
    expect(Object.keys(fieldsOf(crd, "v2"))).toEqual(["spec.size"]);
    const old = JSON.parse(new TextDecoder().decode(crdJson(base)));
    delete old.spec.versions;
    expect(Object.keys(fieldsOf(decodeCrd(enc(JSON.stringify(old))), "v1"))).toEqual(["spec.color", "status.ready"]);
  });
  test("a conversion webhook: a field another version declares too is not evaluated", () => {
    const crd = decodeCrd(crdJson({
      ...base,
      conversion: "Webhook",
      versions: [{ name: "v1", fields: [".spec.color", ".spec.size"] }, { name: "v2", fields: [".spec.color"] }],
    }));
    expect(Object.keys(fieldsOf(crd, "v1"))).toEqual(["spec.size"]);
    expect(Object.keys(fieldsOf(crd, "v2"))).toEqual([]);
    // without a webhook versions differ only in apiVersion
    const none = decodeCrd(crdJson({ ...base, versions: [{ name: "v1", fields: [".spec.color"] }, { name: "v2", fields: [".spec.color"] }] }));
    expect(Object.keys(fieldsOf(none, "v2"))).toEqual(["spec.color"]);
  });
  test("a default on the path in any version: absence says nothing", () => {
    const props = (spec: Record<string, unknown>) => ({ spec: { type: "object", properties: { color: { type: "string" }, size: { type: "integer" } }, ...spec } });
    const crd = decodeCrd(crdJson({
      ...base,
      versions: [
        { name: "v1", fields: [".spec.color", ".spec.size"], properties: props({}) },
        { name: "v2", fields: [".spec.color"], properties: { spec: { type: "object", properties: { color: { type: "string", default: "red" } } } } },
      ],
    }));
    expect(fieldsOf(crd, "v1")["spec.color"]!.absentIsEmpty).toBe(false);
    expect(fieldsOf(crd, "v1")["spec.size"]!.absentIsEmpty).toBe(true);
    // a default on an object on the way
    const outer = decodeCrd(crdJson({ ...base, versions: [{ name: "v1", fields: [".spec.color"], properties: props({ default: { color: "blue" } }) }] }));
    expect(fieldsOf(outer, "v1")["spec.color"]!.absentIsEmpty).toBe(false);
  });
  test("paths strata does not evaluate are left out", () => {
    const crd = decodeCrd(crdJson({ ...base, versions: [{ name: "v1", fields: [".spec.items[0]", ".metadata.name", ".spec.color"] }] }));
    expect(Object.keys(fieldsOf(crd, "v1"))).toEqual(["spec.color"]);
  });
  test("not a CRD strata can read: another object, encrypted, not JSON", () => {
    expect(decodeCrd(widget({}))).toBeUndefined();
    expect(decodeCrd(encrypted("crd"))).toBeUndefined();
    expect(decodeCrd(asProtobuf({ apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition", name: "x" }))).toBeUndefined();
    expect(decodeCrd(enc("{"))).toBeUndefined();
    expect(decodeCrd(enc(JSON.stringify({ apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition", spec: { group: "g" } })))).toBeUndefined();
  });
});

describe("the matcher with a CRD lookup", () => {
  const lookup: CustomFieldLookup = (apiVersion, kind, field) =>
    apiVersion === "example.com/v1" && kind === "Widget" && field === "spec.color" ? { path: ["spec", "color"], absentIsEmpty: true } : undefined;
  const red = widget({ spec: { color: "red" } }), blue = widget({ spec: { color: "blue" } }), none = widget({ spec: {} });

  test("a declared field is evaluated: matches kept, others dropped, absence is empty", () => {
    const s = parseSelection("", "spec.color=red")!;
    expect([red, blue, none].map((v) => selects(s, v, lookup))).toEqual([true, false, false]);
    const empty = parseSelection("", "spec.color=")!;
    expect([red, blue, none].map((v) => selects(empty, v, lookup))).toEqual([false, false, true]);
    expect([red, blue, none].map((v) => selects(parseSelection("", "spec.color!=red")!, v, lookup))).toEqual([false, true, true]);
  });
  test("without a lookup, in another version, or undeclared: kept (superset) unless a known requirement fails", () => {
    const s = parseSelection("", "spec.color=red")!;
    expect([red, blue, none].map((v) => selects(s, v))).toEqual([true, true, true]);
    expect(selects(s, widget({ spec: { color: "blue" } }, "example.com/v2"), lookup)).toBe(true);
    expect(selects(parseSelection("", "spec.size=3")!, blue, lookup)).toBe(true);
    expect(selects(parseSelection("", "spec.size=3,metadata.name=other")!, blue, lookup)).toBe(false);
    expect(selects(s, encrypted("w"), lookup)).toBe(true);
  });
  test("built-in fields are the built-ins' whatever the lookup says", () => {
    const everything: CustomFieldLookup = () => ({ path: ["spec", "nodeName"], absentIsEmpty: true });
    const pod = asJson({ apiVersion: "v1", kind: "Pod", name: "p", namespace: "a", body: { spec: { nodeName: "n1" } } });
    expect(selects(parseSelection("", "spec.nodeName=n1")!, pod, everything)).toBe(true);
    expect(selects(parseSelection("", "spec.nodeName=n2")!, pod, everything)).toBe(false);
  });
});
