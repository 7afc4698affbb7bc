// The router's contract: the routing policy it is given (a Topology: backends, rules,
// key prefixes) and what it reports upward (a database's figures and probe, a live move's
// progress). config/ builds topologies of this shape, the keyspace hands them on, and the
// keyspace contract names the reports; an upstream etcd (backends/etcd) reports the same
// figures through it. Nothing below the router implements it, so only the layers above
// (and config/) import it.
import type { Rev } from "../mvcc/types.ts";

/** where kube-apiserver keeps its keys unless --etcd-prefix says otherwise */
export const DEFAULT_KEY_PREFIX = "/registry/";

/** what a route matches; router/rules.ts compiles it */
export interface Match {
  prefix?: string;
  /** a regular expression tested against the whole key */
  key?: string;
  group?: string;
  resource?: string;
  /** a glob: * matches any run of characters, ? one character */
  namespace?: string;
}

/** A match as people read it, "resource: pods, namespace: kube-*" (messages, the status page, `strata route`). */
export function describe(m: Match): string {
  return Object.entries(m).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}: ${v}`).join(", ");
}

export interface Rule {
  match: Match;
  backend: string;
  /** where the rule was written, for messages: "strata.yaml: routes[2]" */
  source: string;
}

/** What a topology entry sets for its backend beyond the URL, where strata can honour it. */
export interface BackendSettings {
  /** connections in the backend's pool (HariKube's connectionPool.maxOpen) */
  poolSize?: number;
}

export interface Topology {
  /** backend name → URL, in the order written */
  backends: Map<string, string>;
  /** backend name → its own settings, for the backends that set any */
  settings?: Map<string, BackendSettings>;
  /**
   * Fields the entries set that strata does not honour, one line naming each entry and
   * field (warned about when the topology is put in force, never silently dropped).
   */
  ignored?: string;
  default: string;
  rules: Rule[];
  /**
   * The prefixes kube-apiservers store under (their --etcd-prefix, with a trailing "/"),
   * in the order written; rules read a key's group, resource and namespace under the one
   * it starts with. None contains another.
   */
  keyPrefixes: string[];
  /** where it was read from, for messages */
  source: string;
}

/** A backend's figures for the status page and metrics; a backend that cannot answer carries its error instead. */
export type BackendStats =
  | { name: string; url: string; keys: bigint; size: bigint; inUse: bigint; revision: Rev; compactRevision: Rev; error?: undefined }
  | { name: string; url: string; error: string };

/** A backend with a cheap call that shows whether it answers (health checks). */
export interface Probe {
  name: string;
  url: string;
  probe: () => Promise<unknown>;
}

/** A live move's progress (router/move.ts), reported as it goes. */
export interface MoveProgress {
  phase: "counting" | "copying" | "catching up" | "switched" | "cleaning up" | "done";
  moved: number;
  total: number;
  message?: string;
}
