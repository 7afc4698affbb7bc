// What the status page shows, as JSON: the topology (rules in order, the default
// backend), each backend's health and figures, and the last minutes' timeline.
// Revisions are strings: they are 64-bit numbers, beyond what JSON numbers hold exactly.
import { describe } from "../router/validate.ts";
import type { Observer } from "./observer.ts";
import type { Point } from "./timeline.ts";

export interface StatusReport {
  name: string;
  version: string;
  startedAt: string;
  revision: string;
  compactRevision: string;
  keyPrefix: string;
  default: string;
  routes: Array<{ match: string; backend: string }>;
  backends: BackendStatus[];
  watchers: number;
  watchStreams: number;
  timeline: Point[];
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
  revision?: string;
  compactRevision?: string;
}

const startedAt = new Date().toISOString();

export async function statusReport(o: Observer, about: { name: string; version: string }): Promise<StatusReport> {
  const { router, hub, stats, health, timeline, probes } = o.state;
  const [figures, checks] = await Promise.all([stats.get(), health.get()]);
  const t = router.topology;
  return {
    ...about,
    startedAt,
    revision: String(router.revision),
    compactRevision: String(router.compactRevision),
    keyPrefix: t.keyPrefix,
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
      if (f && f.error === undefined) {
        Object.assign(status, { keys: Number(f.keys), sizeBytes: Number(f.size), revision: String(f.revision), compactRevision: String(f.compactRevision) });
      }
      return status;
    }),
    watchers: hub.size,
    watchStreams: o.metrics.watchStreams,
    timeline: timeline.points,
  };
}
