// Kubernetes label and field selectors (src/selectors): the parser (every operator, errors
// with positions), the decoders (JSON and the protobuf envelope, built by hand) and the
// matcher against a reference written from Kubernetes' documented rules.
import { describe, expect, test } from "bun:test";
import {
  decodeObject,
  type ObjectView,
  parseFieldSelector,
  parseLabelSelector,
  parseSelection,
  SelectorError,
  selects,
} from "../../src/selectors/index.ts";
import {
  asJson,
  asProtobuf,
  encrypted,
  fieldsOf,
  type K8sObject,
  pbField,
  pbMessage,
  referenceFields,
  referenceLabels,
} from "../support/k8s-objects.ts";

describe("label selector parser", () => {
  test("every operator", () => {
    expect(parseLabelSelector("a=b, c==d ,e!=f,g in (x, y),h notin (z),i,!j,k>3,l<-2")).toEqual([
      { key: "a", op: "=", values: ["b"] },
      { key: "c", op: "=", values: ["d"] },
      { key: "e", op: "!=", values: ["f"] },
      { key: "g", op: "in", values: ["x", "y"] },
      { key: "h", op: "notin", values: ["z"] },
      { key: "i", op: "exists", values: [] },
      { key: "j", op: "!", values: [] },
      { key: "k", op: ">", values: ["3"] },
      { key: "l", op: "<", values: ["-2"] },
    ]);
  });
  test("empty selects everything; empty values; prefixed keys", () => {
    expect(parseLabelSelector("")).toEqual([]);
    expect(parseLabelSelector("  ")).toEqual([]);
    expect(parseLabelSelector("a=")).toEqual([{ key: "a", op: "=", values: [""] }]);
    expect(parseLabelSelector("a in (x,)")).toEqual([{ key: "a", op: "in", values: ["x", ""] }]);
    expect(parseLabelSelector("app.kubernetes.io/name=web")).toEqual([{ key: "app.kubernetes.io/name", op: "=", values: ["web"] }]);
  });
  const position = (s: string) => {
    try {
      parseLabelSelector(s);
    } catch (err) {
      expect(err).toBeInstanceOf(SelectorError);
      expect((err as Error).message).toContain(`invalid label selector ${JSON.stringify(s)}: at position ${(err as SelectorError).position}`);
      return (err as SelectorError).position;
    }
    throw new Error(`${s} parsed`);
  };
  test("errors name the position", () => {
    expect(position("a in (x")).toBe(7);
    expect(position("a=b,")).toBe(4);
    expect(position("a b")).toBe(2);
    expect(position(",a")).toBe(0);
    expect(position("a in ()")).toBe(6);
    expect(position("a in x")).toBe(5);
    expect(position("a=b c")).toBe(4);
    expect(position("a>x")).toBe(2);
    expect(position("-a=b")).toBe(0);
    expect(position("a=-b")).toBe(2);
    expect(position("!")).toBe(1);
    expect(position("a=(b)")).toBe(2);
    expect(position(`a=${"x".repeat(64)}`)).toBe(2);
    expect(position("Bad_Prefix/a=b")).toBe(0);
  });
});

describe("field selector parser", () => {
  test("operators, escapes, empty terms", () => {
    expect(parseFieldSelector("metadata.name=a,status.phase!=Running,spec.nodeName==")).toEqual([
      { field: "metadata.name", op: "=", value: "a" },
      { field: "status.phase", op: "!=", value: "Running" },
      { field: "spec.nodeName", op: "=", value: "" },
    ]);
    expect(parseFieldSelector("a=x\\,y\\=z\\\\,,")).toEqual([{ field: "a", op: "=", value: "x,y=z\\" }]);
    expect(parseFieldSelector("")).toEqual([]);
  });
  test("errors name the position", () => {
    const at = (s: string) => {
      try {
        parseFieldSelector(s);
      } catch (err) {
        expect((err as Error).message).toStartWith(`invalid field selector ${JSON.stringify(s)}: at position`);
        return (err as SelectorError).position;
      }
      throw new Error(`${s} parsed`);
    };
    expect(at("a=b,c")).toBe(4);
    expect(at("a=b\\x")).toBe(3);
    expect(at("a=b=c")).toBe(3);
    expect(at("=b")).toBe(0);
    expect(at("a=b\\")).toBe(3);
  });
  test("parseSelection: nothing to select is undefined", () => {
    expect(parseSelection("", "")).toBeUndefined();
    expect(parseSelection("a", "")).toBeDefined();
    expect(() => parseSelection("", "x")).toThrow(/invalid field selector "x": at position 0/);
  });
});

const pod: K8sObject = {
  apiVersion: "v1",
  kind: "Pod",
  name: "web-0",
  namespace: "prod",
  labels: { app: "web", "app.kubernetes.io/part-of": "shop" },
  body: { spec: { nodeName: "node-1", restartPolicy: "Always", hostNetwork: true }, status: { phase: "Running", podIP: "10.0.0.7" } },
};

describe("object decoding", () => {
  for (const [encoding, encode] of [["JSON", asJson], ["protobuf", asProtobuf]] as const) {
    test(`${encoding}: metadata, labels, the pod's fields with Kubernetes' zero values`, () => {
      const o = decodeObject(encode(pod)) as ObjectView;
      expect(o.name).toBe("web-0");
      expect(o.namespace).toBe("prod");
      expect(Object.fromEntries(o.labels)).toEqual(pod.labels!);
      expect(o.field("metadata.name")).toBe("web-0");
      expect(o.field("spec.nodeName")).toBe("node-1");
      expect(o.field("spec.hostNetwork")).toBe("true");
      expect(o.field("status.phase")).toBe("Running");
      expect(o.field("status.nominatedNodeName")).toBe("");
      expect(o.field("spec.schedulerName")).toBe("");
      expect(o.field("spec.unknown")).toBeUndefined();
    });
    test(`${encoding}: other kinds' fields; custom resources have metadata only`, () => {
      const event = decodeObject(encode({
        apiVersion: "v1", kind: "Event", name: "e1", namespace: "prod",
        body: { involvedObject: { kind: "Pod", name: "web-0" }, reason: "Started", source: { component: "kubelet" }, type: "Normal" },
      })) as ObjectView;
      expect([event.field("involvedObject.kind"), event.field("involvedObject.name"), event.field("reason"), event.field("source"), event.field("type")])
        .toEqual(["Pod", "web-0", "Started", "kubelet", "Normal"]);
      const node = decodeObject(encode({ apiVersion: "v1", kind: "Node", name: "n1", body: { spec: {} } })) as ObjectView;
      expect(node.field("spec.unschedulable")).toBe("false");
      expect(node.namespace).toBe("");
      const secret = decodeObject(encode({ apiVersion: "v1", kind: "Secret", name: "s", namespace: "a", body: { type: "Opaque" } })) as ObjectView;
      expect(secret.field("type")).toBe("Opaque");
    });
  }
  test("custom resources (JSON): metadata fields only", () => {
    const cr = decodeObject(asJson({ apiVersion: "example.com/v1", kind: "Widget", name: "w", namespace: "a", body: { spec: { size: "L" } } })) as ObjectView;
    expect(cr.field("metadata.namespace")).toBe("a");
    expect(cr.field("spec.size")).toBeUndefined();
  });
  test("job, replica set and signing request fields in JSON", () => {
    const job = decodeObject(asJson({ apiVersion: "batch/v1", kind: "Job", name: "j", namespace: "a", body: { status: { succeeded: 3 } } })) as ObjectView;
    expect(job.field("status.successful")).toBe("3");
    const rs = decodeObject(asJson({ apiVersion: "apps/v1", kind: "ReplicaSet", name: "r", namespace: "a", body: {} })) as ObjectView;
    expect(rs.field("status.replicas")).toBe("0");
  });
  test("protobuf: a later occurrence of a field wins; wrong wire types cannot be evaluated", () => {
    const meta = pbMessage(pbField(1, "a"), pbField(1, "b"), pbField(3, "ns"));
    const bad = pbMessage(pbField(10, 7)); // nodeName as a varint
    const object = pbMessage(pbField(1, meta), pbField(2, bad));
    const unknown = pbMessage(pbField(1, pbMessage(pbField(1, "v1"), pbField(2, "Pod"))), pbField(2, object));
    const o = decodeObject(new Uint8Array([0x6b, 0x38, 0x73, 0, ...unknown])) as ObjectView;
    expect(o.name).toBe("b");
    expect(o.field("spec.nodeName")).toBeUndefined();
    expect(o.field("status.phase")).toBe("");
  });
  test("what cannot be decoded: encrypted, truncated, compressed, foreign; empty is absent", () => {
    expect(decodeObject(encrypted("secret"))).toBeUndefined();
    expect(decodeObject(asProtobuf(pod).subarray(0, 30))).toBeUndefined();
    expect(decodeObject(new TextEncoder().encode("{not json"))).toBeUndefined();
    expect(decodeObject(new TextEncoder().encode("plain"))).toBeUndefined();
    const gz = pbMessage(pbField(1, pbMessage(pbField(1, "v1"), pbField(2, "Pod"))), pbField(2, new Uint8Array([1, 2])), pbField(3, "gzip"));
    expect(decodeObject(new Uint8Array([0x6b, 0x38, 0x73, 0, ...gz]))).toBeUndefined();
    expect(decodeObject(new Uint8Array(0))).toBe("absent");
  });
});

// a small population and selectors covering every operator; the matcher must agree with the reference on each
const population: K8sObject[] = [];
for (let i = 0; i < 24; i++) {
  const labels: Record<string, string> = { app: ["web", "db", "cache"][i % 3]! };
  if (i % 2) labels.tier = i % 4 === 1 ? "front" : "back";
  if (i % 5 === 0) labels.canary = "";
  if (i % 3 === 1) labels.shard = String(i);
  population.push({
    apiVersion: "v1",
    kind: "Pod",
    name: `p${i}`,
    namespace: i % 2 ? "prod" : "dev",
    labels,
    body: { spec: i % 4 ? { nodeName: `n${i % 3}`, hostNetwork: i % 6 === 0 } : {}, status: { phase: i % 3 ? "Running" : "Pending" } },
  });
}
const LABEL_SELECTORS = [
  "", "app=web", "app==db", "app!=web", "tier in (front,back)", "tier notin (front)", "tier", "!tier", "canary", "canary=",
  "app=web,tier=front", "app in (web,db),!canary", "shard>10", "shard<5", "tier!=", "app notin (web,db),tier",
];
const FIELD_SELECTORS = [
  "", "metadata.name=p3", "metadata.namespace=prod", "metadata.namespace!=prod", "spec.nodeName=", "spec.nodeName=n1",
  "status.phase=Running,spec.nodeName!=n2", "spec.hostNetwork=true", "metadata.name==p4",
];

describe("matcher against the reference", () => {
  for (const [encoding, encode] of [["JSON", asJson], ["protobuf", asProtobuf]] as const) {
    test(`${encoding}: every label and field selector`, () => {
      for (const l of LABEL_SELECTORS) {
        for (const f of FIELD_SELECTORS) {
          const s = parseSelection(l, f);
          for (const o of population) {
            const want = referenceLabels(l, o.labels ?? {}) && referenceFields(f, fieldsOf(o));
            const got = s === undefined || selects(s, encode(o));
            if (got !== want) throw new Error(`${encoding} ${o.name} labels ${JSON.stringify(l)} fields ${JSON.stringify(f)}: ${got}, reference ${want}`);
          }
        }
      }
    });
  }
  test("superset: undecodable values and unknown fields are kept, unless a known requirement fails", () => {
    const s = parseSelection("app=nothing", "")!;
    expect(selects(s, encrypted("x"))).toBe(true);
    expect(selects(s, new Uint8Array(0))).toBe(false);
    const cr = asJson({ apiVersion: "example.com/v1", kind: "Widget", name: "w", namespace: "a", labels: { app: "x" } });
    expect(selects(parseSelection("", "spec.size=L")!, cr)).toBe(true);
    expect(selects(parseSelection("app=y", "spec.size=L")!, cr)).toBe(false);
    expect(selects(parseSelection("", "spec.size=L,metadata.namespace=b")!, cr)).toBe(false);
  });
});
