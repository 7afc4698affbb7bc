// The anatomy of a key kube-apiserver stores: PREFIX[group/]resource/[namespace/]name.
// PREFIX is kube-apiserver's --etcd-prefix (/registry/ by default); one strata may serve
// several apiservers, each under its own prefix (/tenant-a/registry/), and a key is read
// under the one it starts with (the configured prefixes never contain one another).
// Built-in resources are stored without their API group (/registry/deployments/...), so a
// first segment is a group only when it holds a dot (apiregistration.k8s.io, CRD groups).
// Services keep an extra segment (/registry/services/specs/ns/name, .../endpoints/...).
import { DEFAULT_KEY_PREFIX } from "./contract.ts";

/** resources whose keys carry one more segment between resource and namespace */
const SUBDIVIDED: Record<string, true> = { services: true };

export interface KeyAnatomy {
  /** the key prefix it is stored under */
  prefix: string;
  /** the API group; undefined for built-in resources stored without one */
  group?: string;
  resource: string;
  /** specs or endpoints for services */
  sub?: string;
  /** undefined for cluster-scoped objects (nodes, namespaces, CRDs, apiservices...) */
  namespace?: string;
  name: string;
}

function isGroup(segment: string): boolean {
  return segment.includes(".");
}

/** One key prefix or several (the configured ones; none contains another). */
export type KeyPrefixes = string | readonly string[];

/** the prefix among `prefixes` that a key (or a longer prefix) starts with */
export function prefixOf(key: string, prefixes: KeyPrefixes): string | undefined {
  return typeof prefixes === "string" ? (key.startsWith(prefixes) ? prefixes : undefined) : prefixes.find((p) => key.startsWith(p));
}

/** Parses a whole key; undefined when it is under none of the prefixes or has no name. */
export function parseKey(key: string, prefixes: KeyPrefixes = DEFAULT_KEY_PREFIX): KeyAnatomy | undefined {
  const prefix = prefixOf(key, prefixes);
  if (prefix === undefined) return undefined;
  const segs = key.slice(prefix.length).split("/");
  let i = 0;
  const group = isGroup(segs[0]!) ? segs[i++] : undefined;
  const resource = segs[i++];
  if (!resource) return undefined;
  const sub = SUBDIVIDED[resource] && segs.length - i >= 2 ? segs[i++] : undefined;
  const [head, ...tail] = segs.slice(i);
  if (!head || tail.some((s) => s === "")) return undefined;
  if (tail.length === 0) return { prefix, group, resource, sub, name: head };
  return { prefix, group, resource, sub, namespace: head, name: tail.join("/") };
}

/**
 * What every key starting with `p` is known to have. A field that is a string is fixed
 * for all of them; `partial` means only its beginning is known (the rest of `p`);
 * undefined means it varies (or is absent for some keys).
 */
export interface PrefixAnatomy {
  underPrefix: boolean;
  /** undefined: unknown; null: known to have no group */
  group?: Known;
  resource?: Known;
  namespace?: Known;
}
export type Known = { exact: string } | { partial: string } | null;

/** Parses the part of a key that a key prefix fixes (used to tell which rules a range can meet). */
export function parsePrefix(p: string, prefixes: KeyPrefixes = DEFAULT_KEY_PREFIX): PrefixAnatomy {
  const prefix = prefixOf(p, prefixes);
  if (prefix === undefined) return { underPrefix: false };
  const segs = p.slice(prefix.length).split("/");
  // the last element is a partial segment ("" when p ends with "/")
  const complete = segs.slice(0, -1);
  const partial = segs.at(-1)!;
  const out: PrefixAnatomy = { underPrefix: true };
  const seg = (i: number): Known | undefined =>
    i < complete.length ? { exact: complete[i]! } : i === complete.length ? { partial } : undefined;
  const first = seg(0);
  if (!first || "partial" in first) {
    // the first segment could be a group or a resource
    return out;
  }
  let i = 0;
  if (isGroup(first.exact)) {
    out.group = first;
    i = 1;
  } else out.group = null;
  const resource = seg(i);
  out.resource = resource;
  if (!resource || !("exact" in resource)) return out;
  i++;
  if (SUBDIVIDED[resource.exact]) {
    // services/<sub>/<namespace>/<name>; the sub segment itself is not a namespace
    if (i >= complete.length) return out;
    i++;
  }
  // a namespace is only certain once a segment after it is begun: /registry/pods/ns/
  if (i < complete.length) out.namespace = { exact: complete[i]! };
  else out.namespace = { partial };
  return out;
}
