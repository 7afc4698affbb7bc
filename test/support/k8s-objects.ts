// Kubernetes-shaped stored objects for the selector tests, in both encodings the
// apiserver stores (JSON, and protobuf in its "k8s\0" + runtime.Unknown envelope), built
// by hand here so the tests do not share strata's decoder; and a reference matcher written
// from Kubernetes' documented selector rules, independent of strata's parser.

// ---- a tiny protobuf writer

const enc = new TextEncoder();

function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, BigInt(n));
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}

/** one field: a string, bytes or a message (length-delimited), a boolean or an integer (varint) */
export function pbField(no: number, v: string | Uint8Array | boolean | number): number[] {
  if (typeof v === "boolean" || typeof v === "number") return [...varint((no << 3) | 0), ...varint(Number(v))];
  const bytes = typeof v === "string" ? enc.encode(v) : v;
  return [...varint((no << 3) | 2), ...varint(bytes.length), ...bytes];
}

export function pbMessage(...fields: number[][]): Uint8Array {
  return new Uint8Array(fields.flat());
}

// ---- objects

export interface K8sObject {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** the object's other content, in its JSON shape */
  body?: Record<string, unknown>;
}

export function asJson(o: K8sObject): Uint8Array {
  const metadata: Record<string, unknown> = { name: o.name, uid: `uid-${o.name}` };
  if (o.namespace) metadata.namespace = o.namespace;
  if (o.labels) metadata.labels = o.labels;
  if (o.annotations) metadata.annotations = o.annotations;
  return enc.encode(JSON.stringify({ apiVersion: o.apiVersion, kind: o.kind, metadata, ...o.body }));
}

/**
 * Protobuf for the kinds the tests store: the object's fields from Kubernetes'
 * generated.proto numbers (metadata=1; ObjectMeta name=1, namespace=3, uid=5, labels=11,
 * annotations=12).
 */
export function asProtobuf(o: K8sObject): Uint8Array {
  const map = (no: number, m: Record<string, string> | undefined) => Object.entries(m ?? {}).map(([k, v]) => pbField(no, pbMessage(pbField(1, k), pbField(2, v))));
  const meta = pbMessage(pbField(1, o.name), ...(o.namespace ? [pbField(3, o.namespace)] : []), pbField(5, `uid-${o.name}`), ...map(11, o.labels), ...map(12, o.annotations));
  const b = (o.body ?? {}) as Record<string, Record<string, unknown> | string | undefined>;
  const s = (v: unknown, no: number) => (v === undefined ? [] : [pbField(no, v as string | boolean | number)]);
  let rest: number[][] = [];
  if (o.kind === "Pod") {
    const spec = (b.spec ?? {}) as Record<string, unknown>, status = (b.status ?? {}) as Record<string, unknown>;
    rest = [
      pbField(2, pbMessage(...s(spec.restartPolicy, 3), ...s(spec.serviceAccountName, 8), ...s(spec.nodeName, 10), ...s(spec.hostNetwork, 11), ...s(spec.schedulerName, 19))),
      pbField(3, pbMessage(...s(status.phase, 1), ...s(status.podIP, 6), ...s(status.nominatedNodeName, 11))),
    ];
  } else if (o.kind === "Secret") {
    rest = [pbField(2, pbMessage(pbField(1, "k"), pbField(2, "dmFsdWU="))), ...s(b.type, 3)];
  } else if (o.kind === "Event") {
    const io = (b.involvedObject ?? {}) as Record<string, unknown>, src = (b.source ?? {}) as Record<string, unknown>;
    rest = [
      pbField(2, pbMessage(...s(io.kind, 1), ...s(io.namespace, 2), ...s(io.name, 3))),
      ...s(b.reason, 3),
      pbField(5, pbMessage(...s(src.component, 1))),
      ...s(b.type, 9),
    ];
  } else if (o.kind === "Node") {
    const spec = (b.spec ?? {}) as Record<string, unknown>;
    rest = [pbField(2, pbMessage(...s(spec.unschedulable, 4)))];
  }
  const object = pbMessage(pbField(1, meta), ...rest);
  const typeMeta = pbMessage(pbField(1, o.apiVersion), pbField(2, o.kind));
  const unknown = pbMessage(pbField(1, typeMeta), pbField(2, object), pbField(4, "application/vnd.kubernetes.protobuf"));
  return new Uint8Array([0x6b, 0x38, 0x73, 0x00, ...unknown]);
}

/** an encrypted value as the apiserver's aescbc provider stores it */
export function encrypted(seed: string): Uint8Array {
  return new Uint8Array([...enc.encode("k8s:enc:aescbc:v1:key1:"), ...enc.encode(seed).map((c) => c ^ 0x5a)]);
}

/** the fields a selector may name on the object, as Kubernetes turns them into strings */
export function fieldsOf(o: K8sObject): Record<string, string> {
  const b = (o.body ?? {}) as Record<string, Record<string, unknown> | string | undefined>;
  const get = (path: string) =>
    path.split(".").reduce<unknown>((v, k) => (v && typeof v === "object" ? (v as Record<string, unknown>)[k] : undefined), b);
  const str = (path: string) => String(get(path) ?? "");
  const bool = (path: string) => String(get(path) ?? false);
  const f: Record<string, string> = { "metadata.name": o.name, "metadata.namespace": o.namespace ?? "" };
  if (o.kind === "Pod") {
    for (const p of ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "status.phase", "status.podIP", "status.nominatedNodeName"]) f[p] = str(p);
    f["spec.hostNetwork"] = bool("spec.hostNetwork");
  } else if (o.kind === "Secret") f.type = str("type");
  else if (o.kind === "Event") {
    for (const p of ["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "reason", "type"]) f[p] = str(p);
    f.source = str("source.component");
  } else if (o.kind === "Node") f["spec.unschedulable"] = bool("spec.unschedulable");
  return f;
}

// ---- the reference matcher (Kubernetes' documented selector rules)

/** splits on commas outside parentheses */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0, cur = "";
  for (const c of s) {
    if (c === "(") depth++;
    if (c === ")") depth--;
    if (c === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/**
 * Whether labels satisfy a label selector: every comma-separated requirement holds.
 * `k=v`/`k==v`: k present with value v; `k!=v`: k absent or another value; `k in (a,b)`:
 * present with one of them; `k notin (a,b)`: absent or none of them; `k`: present; `!k`:
 * absent; `k>n`/`k<n`: present holding an integer above/below n. Empty: everything.
 */
export function referenceLabels(selector: string, labels: Record<string, string>): boolean {
  if (selector.trim() === "") return true;
  return splitTop(selector).every((raw) => {
    const t = raw.trim();
    let m;
    if ((m = t.match(/^!\s*([^\s=!<>(),]+)$/))) return !(m[1]! in labels);
    if ((m = t.match(/^([^\s=!<>(),]+)\s+(in|notin)\s*\((.*)\)$/))) {
      const set = m[3]!.split(",").map((v) => v.trim());
      const has = m[1]! in labels && set.includes(labels[m[1]!]!);
      return m[2] === "in" ? has : !has;
    }
    if ((m = t.match(/^([^\s=!<>(),]+)\s*(==|=|!=)\s*([^\s=!<>(),]*)$/))) {
      const has = m[1]! in labels && labels[m[1]!] === m[3];
      return m[2] === "!=" ? !has : has;
    }
    if ((m = t.match(/^([^\s=!<>(),]+)\s*(>|<)\s*(-?\d+)$/))) {
      const v = labels[m[1]!];
      if (v === undefined || !/^-?\d+$/.test(v)) return false;
      return m[2] === ">" ? Number(v) > Number(m[3]) : Number(v) < Number(m[3]);
    }
    if ((m = t.match(/^([^\s=!<>(),]+)$/))) return m[1]! in labels;
    throw new Error(`reference matcher cannot read ${JSON.stringify(t)}`);
  });
}

/**
 * Whether fields satisfy a field selector: comma-separated `f=v`, `f==v` or `f!=v` terms
 * (`\,` `\=` `\\` escapes in values), every one holding; a field the object lacks is "".
 */
export function referenceFields(selector: string, fields: Record<string, string>): boolean {
  const terms = selector.split(/(?<!\\),/).filter((t) => t.trim() !== "");
  return terms.every((t) => {
    const m = t.match(/^([^=!]+?)\s*(!=|==|=)(.*)$/);
    if (!m) throw new Error(`reference matcher cannot read ${JSON.stringify(t)}`);
    const value = m[3]!.replace(/\\(.)/g, "$1");
    const equal = (fields[m[1]!.trim()] ?? "") === value;
    return m[2] === "!=" ? !equal : equal;
  });
}

// ---- CustomResourceDefinitions

export interface CrdVersion {
  name: string;
  /** the selectable fields' JSON paths */
  fields?: string[];
  /** the schema's `properties` under the root (defaults to none) */
  properties?: Record<string, unknown>;
}

export interface Crd {
  group: string;
  kind: string;
  plural: string;
  versions: CrdVersion[];
  /** "None" unless set */
  conversion?: "None" | "Webhook";
  /**
   * the stored shape: v1beta1 (as kube-apiserver stores CRDs; fields and schema held once
   * for every version when they are the same in all) or v1
   */
  storedAs?: "v1beta1" | "v1";
}

/** the key kube-apiserver stores a CRD under */
export function crdKey(c: Crd, prefix = "/registry/"): string {
  return `${prefix}apiextensions.k8s.io/customresourcedefinitions/${c.plural}.${c.group}`;
}

/** a CRD as kube-apiserver stores it: JSON, by default in apiextensions.k8s.io/v1beta1 */
export function crdJson(c: Crd): Uint8Array {
  const schemaOf = (v: CrdVersion) => ({ openAPIV3Schema: { type: "object", properties: v.properties ?? {} } });
  const fieldsOf = (v: CrdVersion) => (v.fields ?? []).map((jsonPath) => ({ jsonPath }));
  const same = (f: (v: CrdVersion) => unknown) => c.versions.every((v) => JSON.stringify(f(v)) === JSON.stringify(f(c.versions[0]!)));
  const v1beta1 = (c.storedAs ?? "v1beta1") === "v1beta1";
  // v1beta1 holds what every version shares once, in the spec
  const hoistFields = v1beta1 && same(fieldsOf), hoistSchema = v1beta1 && same(schemaOf);
  const spec: Record<string, unknown> = {
    group: c.group,
    names: { plural: c.plural, singular: c.kind.toLowerCase(), kind: c.kind, listKind: `${c.kind}List` },
    scope: "Namespaced",
    versions: c.versions.map((v, i) => ({
      name: v.name,
      served: true,
      storage: i === 0,
      ...(hoistSchema ? {} : { schema: schemaOf(v) }),
      ...(hoistFields || fieldsOf(v).length === 0 ? {} : { selectableFields: fieldsOf(v) }),
    })),
    conversion: { strategy: c.conversion ?? "None" },
  };
  if (hoistSchema) spec.validation = schemaOf(c.versions[0]!);
  if (hoistFields && fieldsOf(c.versions[0]!).length > 0) spec.selectableFields = fieldsOf(c.versions[0]!);
  if (v1beta1) spec.version = c.versions[0]!.name;
  return enc.encode(JSON.stringify({
    kind: "CustomResourceDefinition",
    apiVersion: `apiextensions.k8s.io/${v1beta1 ? "v1beta1" : "v1"}`,
    metadata: { name: `${c.plural}.${c.group}`, uid: `uid-${c.plural}` },
    spec,
    status: { storedVersions: [c.versions[0]!.name], acceptedNames: { plural: c.plural, kind: c.kind } },
  }));
}
