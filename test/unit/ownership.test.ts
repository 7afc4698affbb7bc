// What the storage-side garbage collector reads and writes of a stored object's metadata
// (src/selectors/object.ts, object-edit.ts, index-entries.ts), in both encodings the
// apiserver stores: uid, ownerReferences, finalizers and deletionTimestamp read alike;
// edits that drop an owner reference or a finalizer, or begin a deletion, change only
// those fields and keep the rest as stored; the index names the uid and the owners' uids.
import { describe, expect, test } from "bun:test";
import { decodeObject, editMeta, indexEntries, labelEntries, type MetaEdit } from "../../src/selectors/index.ts";
import { pbField, pbMessage } from "../support/k8s-objects.ts";

interface Meta {
  uid: string;
  owners: Array<{ uid: string; block: boolean }>;
  finalizers: string[];
  deleting: boolean;
}

const base: Meta = {
  uid: "u-rs",
  owners: [{ uid: "u-deploy", block: true }, { uid: "u-other", block: false }],
  finalizers: ["example.com/keep"],
  deleting: false,
};

function json(m: Meta): Uint8Array {
  const metadata: Record<string, unknown> = { name: "rs", namespace: "ns", uid: m.uid, labels: { app: "web" } };
  if (m.deleting) metadata.deletionTimestamp = "2026-01-01T00:00:00Z";
  metadata.ownerReferences = m.owners.map((r) => ({ apiVersion: "apps/v1", kind: "Deployment", name: "d", uid: r.uid, blockOwnerDeletion: r.block }));
  if (m.finalizers.length) metadata.finalizers = m.finalizers;
  return new TextEncoder().encode(`${JSON.stringify({ apiVersion: "apps/v1", kind: "ReplicaSet", metadata, spec: { replicas: 3 } })}\n`);
}

function protobuf(m: Meta): Uint8Array {
  const meta = pbMessage(
    pbField(1, "rs"),
    pbField(3, "ns"),
    pbField(5, m.uid),
    ...(m.deleting ? [pbField(9, pbMessage(pbField(1, 1767225600)))] : []),
    pbField(11, pbMessage(pbField(1, "app"), pbField(2, "web"))),
    ...m.owners.map((r) => pbField(13, pbMessage(pbField(1, "Deployment"), pbField(3, "d"), pbField(4, r.uid), pbField(5, "apps/v1"), pbField(7, r.block)))),
    ...m.finalizers.map((f) => pbField(14, f)),
  );
  const object = pbMessage(pbField(1, meta), pbField(2, pbMessage(pbField(1, 3))));
  return new Uint8Array([0x6b, 0x38, 0x73, 0x00, ...pbMessage(pbField(1, pbMessage(pbField(1, "apps/v1"), pbField(2, "ReplicaSet"))), pbField(2, object))]);
}

function ownership(value: Uint8Array) {
  const o = decodeObject(value);
  if (o === undefined || o === "absent") throw new Error("decodable");
  return { ...o.ownership, name: o.name, labels: Object.fromEntries(o.labels) };
}

const expected = (m: Meta) => ({
  uid: m.uid,
  owners: m.owners.map((r) => ({ uid: r.uid, blockOwnerDeletion: r.block })),
  finalizers: m.finalizers,
  deleting: m.deleting,
  name: "rs",
  labels: { app: "web" },
});

for (const [encoding, encode] of [["JSON", json], ["protobuf", protobuf]] as const) {
  describe(`ownership in ${encoding}`, () => {
    test("uid, owner references, finalizers and deletion are read", () => {
      expect(ownership(encode(base))).toEqual(expected(base));
      expect(ownership(encode({ ...base, deleting: true, owners: [], finalizers: [] }))).toEqual(expected({ ...base, deleting: true, owners: [], finalizers: [] }));
    });

    test("the index names the object's uid and each owner's", () => {
      const e = indexEntries(encode(base));
      if (e === undefined || e === "opaque") throw new Error("decodable");
      expect(labelEntries(e.packedLabels)).toEqual([["app", "web"], ["@uid", "u-rs"], ["@owner", "u-deploy"], ["@owner", "u-other"]]);
    });

    const cases: Array<[string, MetaEdit, Meta]> = [
      ["dropping an owner reference keeps the others", { dropOwners: new Set(["u-deploy"]) }, { ...base, owners: [base.owners[1]!] }],
      ["dropping every owner reference", { dropOwners: new Set(["u-deploy", "u-other"]) }, { ...base, owners: [] }],
      ["dropping a finalizer", { dropFinalizer: "example.com/keep" }, { ...base, finalizers: [] }],
      ["beginning a deletion with a finalizer adds it once", { beginDeletion: { at: new Date(0), finalizer: "foregroundDeletion" } }, { ...base, deleting: true, finalizers: ["example.com/keep", "foregroundDeletion"] }],
      ["beginning a deletion without one", { beginDeletion: { at: new Date(0) } }, { ...base, deleting: true }],
    ];
    for (const [name, edit, after] of cases) {
      test(name, () => {
        const edited = editMeta(encode(base), edit);
        expect(edited).toBeDefined();
        expect(ownership(edited!)).toEqual(expected(after));
      });
    }

    test("an edit keeps the rest of the object as stored", () => {
      const edited = editMeta(encode(base), { dropOwners: new Set(["u-other"]) })!;
      if (encoding === "JSON") {
        const o = JSON.parse(new TextDecoder().decode(edited));
        expect(o.spec).toEqual({ replicas: 3 });
        expect(o.metadata.ownerReferences[0].apiVersion).toBe("apps/v1");
        expect(new TextDecoder().decode(edited).endsWith("}\n")).toBe(true);
      } else {
        // the same bytes as the object written without that reference
        expect(edited).toEqual(protobuf({ ...base, owners: [base.owners[0]!] }));
      }
      // an owner that is not there changes nothing that is read
      expect(ownership(editMeta(encode(base), { dropOwners: new Set(["nobody"]) })!)).toEqual(expected(base));
    });
  });
}

test("what holds no object the collector can edit is left alone", () => {
  const enc = new TextEncoder();
  expect(editMeta(enc.encode("k8s:enc:aescbc:v1:key1:xxxx"), { dropFinalizer: "x" })).toBeUndefined();
  expect(editMeta(enc.encode("[1, 2]"), { dropFinalizer: "x" })).toBeUndefined();
  expect(editMeta(new Uint8Array([0x6b, 0x38, 0x73, 0x00, 0x12, 0x50]), { dropFinalizer: "x" })).toBeUndefined();
});
