// Everything strata measures about itself, in one place: the Prometheus metrics, the
// timeline the status page charts, per-backend figures and health, and the slow-request
// log. The api layer reports each gRPC call here; backends are timed by a wrapper. The
// running keyspace is read through its contract (ObservedKeyspace), as the rest of the api reads it.
import type { Backend } from "../mvcc/backend.ts";
import type { BackendStats, ObservedKeyspace, PrefixCount, Probe } from "../keyspace/contract.ts";
import { Cached } from "./cached.ts";
import { type BackendHealth, checkBackends } from "./health.ts";
import { instrumentBackend } from "./instrument.ts";
import { log, logs } from "../util/log.ts";
import { type GrpcMethod, Metrics } from "./metrics.ts";
import { SlowRequests } from "./slow-requests.ts";
import { Timeline } from "./timeline.ts";

/** how long per-backend and per-prefix key counts and sizes are reused */
const STATS_MAX_AGE_MS = 5000;
/** a backend slower than this to answer its health check is reported as failing */
export const HEALTH_TIMEOUT_MS = 2000;

export interface Followed {
  keyspace: ObservedKeyspace;
  stats: Cached<BackendStats[]>;
  /** the keys under each key prefix (each tenant's), for the status page */
  prefixCounts: Cached<PrefixCount[]>;
  /** every backend's cheap call that shows whether it answers */
  probes: () => Probe[];
  /** health for the status page: many open pages share one check a second */
  health: Cached<BackendHealth[]>;
  timeline: Timeline;
}

export class Observer {
  readonly metrics = new Metrics();
  private followed?: Followed;
  private readonly slow: SlowRequests;

  constructor(
    /** unary requests slower than this are logged */
    slowMs: number,
    /** one line per interval sums up the slow requests after the first (0: a line each) */
    slowIntervalMs = 0,
  ) {
    this.slow = new SlowRequests(slowMs, slowIntervalMs);
  }

  /** Wraps a backend so each call to it is timed (pass to openRouter). */
  instrument = (name: string, backend: Backend): Backend => instrumentBackend(name, backend, this.metrics.backendCall);

  /** Starts reading the running server's state: the gauges, the timeline. */
  follow(keyspace: ObservedKeyspace): void {
    const stats = new Cached(() => keyspace.stats(), STATS_MAX_AGE_MS);
    const prefixCounts = new Cached(() => keyspace.prefixCounts(), STATS_MAX_AGE_MS);
    const probes = () => keyspace.probes;
    const health = new Cached(() => checkBackends(probes(), HEALTH_TIMEOUT_MS), 1000);
    const timeline = new Timeline(() => keyspace.watchers);
    timeline.start();
    this.metrics.follow({ keyspace, leases: keyspace.leases, stats });
    this.followed = { keyspace, stats, prefixCounts, probes, health, timeline };
  }

  get state(): Followed {
    if (!this.followed) throw new Error("observer: follow() was not called");
    return this.followed;
  }

  callStarted(call: GrpcMethod): void {
    this.metrics.callStarted(call);
  }

  /**
   * Counts a finished call; a unary one also goes into the timeline, and into the
   * slow-request log (slow-requests.ts) when slow, with what `detail` says about it
   * (method-specific: keys, backend). At --log-level debug every call is logged.
   */
  callFinished(call: GrpcMethod, code: string, seconds: number, detail: () => Record<string, unknown>): void {
    this.metrics.callFinished(call, code, seconds);
    const ms = seconds * 1000;
    const method = `/${call.service}/${call.method}`;
    // formatted only for a line that is written: this is on every call's path
    const took = () => `${ms.toFixed(1)}ms`;
    if (call.type !== "unary") {
      if (logs("debug")) log("debug", "stream ended", { method, took: took(), code });
      return;
    }
    this.followed?.timeline.record(ms);
    if (!this.slow.record(method, ms, code, detail) && logs("debug")) log("debug", "request", { method, took: took(), code, ...detail() });
  }

  stop(): void {
    this.slow.stop();
    this.followed?.timeline.stop();
  }
}
