// The fields Kubernetes lets a field selector name, per built-in resource, with where
// each lives in the object: its path in the JSON form and its protobuf field numbers
// (from Kubernetes' generated.proto: the object's metadata=1, spec=2, status=3, then the
// numbers below). metadata.name and metadata.namespace are every object's and come from
// ObjectMeta. A field that is not here cannot be evaluated (the object is kept).

export interface SelectableField {
  /** the field's path in the JSON object */
  json: string[];
  /** its protobuf field numbers from the object's message down */
  pb: number[];
  /** how Kubernetes turns it into the string a selector compares: as it is, true/false, or a decimal number */
  type: "string" | "bool" | "int";
}

const at = (json: string, pb: number[], type: SelectableField["type"] = "string"): SelectableField => ({ json: json.split("."), pb, type });

/** by API group ("" for the core group) and kind, as the object's apiVersion and kind name it */
const BUILT_IN: Record<string, Record<string, SelectableField>> = {
  "/Pod": {
    "spec.nodeName": at("spec.nodeName", [2, 10]),
    "spec.restartPolicy": at("spec.restartPolicy", [2, 3]),
    "spec.schedulerName": at("spec.schedulerName", [2, 19]),
    "spec.serviceAccountName": at("spec.serviceAccountName", [2, 8]),
    "spec.hostNetwork": at("spec.hostNetwork", [2, 11], "bool"),
    "status.phase": at("status.phase", [3, 1]),
    "status.podIP": at("status.podIP", [3, 6]),
    "status.nominatedNodeName": at("status.nominatedNodeName", [3, 11]),
  },
  "/Event": {
    "involvedObject.kind": at("involvedObject.kind", [2, 1]),
    "involvedObject.namespace": at("involvedObject.namespace", [2, 2]),
    "involvedObject.name": at("involvedObject.name", [2, 3]),
    "involvedObject.uid": at("involvedObject.uid", [2, 4]),
    "involvedObject.apiVersion": at("involvedObject.apiVersion", [2, 5]),
    "involvedObject.resourceVersion": at("involvedObject.resourceVersion", [2, 6]),
    "involvedObject.fieldPath": at("involvedObject.fieldPath", [2, 7]),
    "reason": at("reason", [3]),
    // Kubernetes selects the reporting controller under this name (its JSON name as well)
    "reportingComponent": at("reportingComponent", [14]),
    // the source's component
    "source": at("source.component", [5, 1]),
    "type": at("type", [9]),
  },
  "/Secret": { "type": at("type", [3]) },
  "/Namespace": { "status.phase": at("status.phase", [3, 1]) },
  "/Node": { "spec.unschedulable": at("spec.unschedulable", [2, 4], "bool") },
  "apps/ReplicaSet": { "status.replicas": at("status.replicas", [3, 1], "int") },
  "/ReplicationController": { "status.replicas": at("status.replicas", [3, 1], "int") },
  // Kubernetes names the succeeded count "successful" in selectors
  "batch/Job": { "status.successful": at("status.succeeded", [3, 5], "int") },
  "certificates.k8s.io/CertificateSigningRequest": { "spec.signerName": at("spec.signerName", [2, 7]) },
};

/** The selectable fields of a built-in object of this apiVersion and kind beyond metadata's; custom resources' come from their CRDs (custom-fields.ts). */
export function selectableFields(apiVersion: string, kind: string): Record<string, SelectableField> | undefined {
  const slash = apiVersion.indexOf("/");
  const group = slash >= 0 ? apiVersion.slice(0, slash) : "";
  return BUILT_IN[`${group}/${kind}`];
}
