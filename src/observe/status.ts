// What the status page shows, as JSON: which strata (version, commit), the topology (rules
// in order, the default backend), the keys under each key prefix (each tenant's), each
// backend's health, figures and storage quota, and the last minutes' timeline.
// One revision: the one clients are answered at now. Backends' own revisions (sparse with
// several, and read every few seconds) would be a second, older number beside it.
// Revisions are strings: they are 64-bit numbers, beyond what JSON numbers hold exactly.
import { describe } from "../router/contract.ts";
import type { Observer } from "./observer.ts";
import type { Point } from "./timeline.ts";

export interface StatusReport {
  name: string;
  version: string;
  /** the git commit it was built from */
  commit: string;
  startedAt: string;
  revision: string;
  compactRevision: string;
  /** each key prefix (each kube-apiserver's, each tenant's), the backends it spans and its live keys */
  keyPrefixes: PrefixStatus[];
  default: string;
  routes: Array<{ match: string; backend: string }>;
  backends: BackendStatus[];
  /** why writes are refused while etcd's NOSPACE alarm is raised (absent when it is not) */
  noSpace?: string;
  watchers: number;
  watchStreams: number;
  timeline: Point[];
}

export interface PrefixStatus {
  prefix: string;
  backends: string[];
  /** absent when it could not be counted (then `error` says why) */
  keys?: number;
  error?: string;
}

export interface BackendStatus {
  name: string;
  /** the URL without credentials */
  url: string;
  isDefault: boolean;
  healthy: boolean;
  /** why it is not healthy */
  error?: string;
  /** how long the health check took, ms */
  checkMs: number;
  /** figures, when the backend answered (refreshed every few seconds) */
  keys?: number;
  sizeBytes?: number;
  /** the storage quota the size counts against (--quota-backend-bytes), when one applies */
  quotaBytes?: number;
}

const startedAt = new Date().toISOString();

export async function statusReport(o: Observer, about: { name: string; version: string; commit: string }): Promise<StatusReport> {
  const { keyspace, stats, prefixCounts, health, timeline, probes } = o.state;
  const [figures, checks, counts] = await Promise.all([stats.get(), health.get(), prefixCounts.get()]);
  // keys are bytes read as latin1; the page shows them as written in the config
  const text = (s: string) => Buffer.from(s, "latin1").toString("utf8");
  const t = keyspace.topology;
  const quotas = keyspace.quotas;
  const noSpace = keyspace.noSpace;
  return {
    ...about,
    startedAt,
    revision: String(keyspace.revision),
    compactRevision: String(keyspace.compactRevision),
    keyPrefixes: counts.map((c): PrefixStatus => ({
      prefix: text(c.prefix),
      backends: c.backends,
      ...(c.error === undefined ? { keys: Number(c.keys) } : { error: c.error }),
    })),
    default: t.default,
    routes: t.rules.map((r) => ({ match: describe(r.match), backend: r.backend })),
    // databases and upstream etcds alike: every backend is probed, and named by its probe
    backends: probes().map((p): BackendStatus => {
      const f = figures.find((s) => s.name === p.name);
      const h = checks.find((c) => c.name === p.name)!;
      const status: BackendStatus = {
        name: p.name,
        url: p.url,
        isDefault: p.name === t.default,
        healthy: h.ok,
        ...(h.error === undefined ? {} : { error: h.error }),
        checkMs: Math.round(h.ms * 10) / 10,
      };
      if (f && f.error === undefined) Object.assign(status, { keys: Number(f.keys), sizeBytes: Number(f.size) });
      const quota = quotas.find((q) => q.name === p.name)?.bytes;
      if (quota !== undefined) status.quotaBytes = Number(quota);
      return status;
    }),
    ...(noSpace !== undefined && { noSpace: noSpace || "raised by a client (etcdctl alarm)" }),
    watchers: keyspace.watchers,
    watchStreams: o.metrics.watchStreams,
    timeline: timeline.points,
  };
}
