// What the SQL backends index of a stored value (src/selectors/index-entries.ts): index
// text that is one-to-one with what selectors compare, and the packed lists the database
// searches with a substring test — an entry is found only as a whole name and value.
import { describe, expect, test } from "bun:test";
import { indexEntries, indexText, labelEntries, packedEntry, packedName } from "../../src/selectors/index.ts";
import { asJson, asProtobuf, encrypted, type K8sObject } from "../support/k8s-objects.ts";

const pod: K8sObject = {
  apiVersion: "v1", kind: "Pod", name: "web-1", namespace: "prod", labels: { app: "web", "app.kubernetes.io/name": "shop" },
  body: { spec: { nodeName: "node-1" }, status: { phase: "Running" } },
};

describe("index entries", () => {
  test("short plain text is stored as it is; long or separator-holding text as its hash, one to one", () => {
    expect(indexText("web")).toBe("web");
    expect(indexText("")).toBe("");
    const long = "x".repeat(129);
    expect(indexText(long)).toMatch(/^\u0001[0-9a-f]{64}$/);
    expect(indexText(long)).not.toBe(indexText(`${long}y`));
    expect(indexText("x".repeat(128))).toBe("x".repeat(128));
    // multi-byte text is bounded by its bytes
    expect(indexText("é".repeat(64))).toBe("é".repeat(64));
    expect(indexText("é".repeat(65))).toMatch(/^\u0001/);
    for (const odd of ["a\tb", "a\nb", "\u0001abc"]) {
      expect(indexText(odd)).toMatch(/^\u0001[0-9a-f]{64}$/);
    }
    // text that looks like a hash is hashed too, so no stored text is ambiguous
    expect(indexText(indexText(long))).not.toBe(indexText(long));
  });

  test("both encodings index the same labels and fields; a substring test finds whole entries only", () => {
    for (const value of [asJson(pod), asProtobuf(pod)]) {
      const e = indexEntries(value);
      if (e === undefined || e === "opaque") throw new Error("decodable");
      // the labels, then the ownership entries (the object's uid; it names no owner)
      expect(labelEntries(e.packedLabels)).toEqual([["app", "web"], ["app.kubernetes.io/name", "shop"], ["@uid", "uid-web-1"]]);
      expect(e.packedLabels.includes(packedEntry("app", "web"))).toBe(true);
      expect(e.packedLabels.includes(packedEntry("app", "we"))).toBe(false);
      expect(e.packedLabels.includes(packedEntry("pp", "web"))).toBe(false);
      expect(e.packedLabels.includes(packedName("app"))).toBe(true);
      expect(e.packedLabels.includes(packedName("ap"))).toBe(false);
      for (const [f, v] of [["metadata.name", "web-1"], ["metadata.namespace", "prod"], ["spec.nodeName", "node-1"], ["status.phase", "Running"], ["spec.hostNetwork", "false"]]) {
        expect(e.packedFields.includes(packedEntry(f!, v!)), `${f}=${v}`).toBe(true);
      }
    }
  });

  test("packed labels list back as their entries, empty ones and all; text without a tab or a final newline ends the list", () => {
    expect(labelEntries("\n")).toEqual([]);
    expect(labelEntries("\na\t\n\tb\n")).toEqual([["a", ""], ["", "b"]]);
    expect(labelEntries("\na\t1\nbroken\nc\t2")).toEqual([["a", "1"], ["c", "2"]]);
  });

  test("undecodable values are opaque; a value holding no object has no entries", () => {
    expect(indexEntries(encrypted("x"))).toBe("opaque");
    expect(indexEntries(new TextEncoder().encode("plain"))).toBe("opaque");
    expect(indexEntries(new Uint8Array(0))).toBeUndefined();
  });
});
