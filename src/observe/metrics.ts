// The Prometheus metrics strata exposes. Where etcd has a metric with the same meaning
// it has etcd's name, labels and type (so etcd dashboards and alerts work); what only a
// router of several databases has is named strata_*, labelled by backend name.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { BackendStats, LeaseKeeper, ObservedKeyspace } from "../keyspace/contract.ts";
import type { Cached } from "./cached.ts";
import { type HistogramSeries, PlainHistogram } from "./plain-histogram.ts";

/** grpc_type as go-grpc-prometheus names it */
export type GrpcType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

export interface GrpcMethod {
  service: string;
  method: string;
  type: GrpcType;
}

/** what one request carried out in the keyspace, as etcd's mvcc counts it */
export interface MvccOps {
  ranges: number;
  puts: number;
  deletes: number;
}

/** etcd's buckets for its disk histograms: 1 ms to 8 s, doubling */
const DISK_BUCKETS = Array.from({ length: 14 }, (_, i) => 0.001 * 2 ** i);
/** an apply slower than this is counted as slow, as etcd warns of them */
const SLOW_APPLY_SECONDS = 0.1;

/** what the gauges read when scraped */
export interface MetricSources {
  keyspace: ObservedKeyspace;
  /** the keyspace's leases when it was followed */
  leases: LeaseKeeper;
  /** per-backend figures, refreshed at most every few seconds (counting keys is not free) */
  stats: Cached<BackendStats[]>;
}

const WATCH_SERVICE = "etcdserverpb.Watch";

type MethodLabels = "grpc_type" | "grpc_service" | "grpc_method";
interface MethodSeries {
  labels: Record<MethodLabels, string>;
  started: Tally;
  handling: HistogramSeries;
  /** by gRPC code */
  handled: Map<string, Tally>;
}

/**
 * A count kept in a plain number and handed to its prom-client series when the registry is
 * read: an increment in prom-client hashes the series' labels and looks it up, on every call.
 */
class Tally {
  private pending = 0;
  constructor(private readonly series: { inc(n: number): void }) {}

  add(n = 1): void {
    this.pending += n;
  }

  flush(): void {
    if (this.pending === 0) return;
    this.series.inc(this.pending);
    this.pending = 0;
  }
}

export class Metrics {
  readonly registry = new Registry();
  private readonly started: Counter<MethodLabels>;
  private readonly handled: Counter<MethodLabels | "grpc_code">;
  private readonly handling: PlainHistogram<MethodLabels>;
  private readonly backendDuration: PlainHistogram<"backend" | "operation">;
  private readonly mvcc: Record<keyof MvccOps | "txns", Tally>;
  private readonly commits: HistogramSeries[];
  private readonly slowApplies: Counter;
  private openWatchStreams = 0;
  private readonly methodSeries = new Map<GrpcMethod, MethodSeries>();
  private readonly backendSeries = new Map<string, HistogramSeries>();

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    // the calls counted since the last read go in as it is read
    const series = this.methodSeries;
    this.started = new Counter({
      name: "grpc_server_started_total",
      help: "Total number of RPCs started on the server.",
      labelNames: ["grpc_type", "grpc_service", "grpc_method"],
      registers,
      collect: () => series.forEach((s) => s.started.flush()),
    });
    this.handled = new Counter({
      name: "grpc_server_handled_total",
      help: "Total number of RPCs completed on the server, regardless of success or failure.",
      labelNames: ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
      registers,
      collect: () => series.forEach((s) => s.handled.forEach((t) => t.flush())),
    });
    this.handling = new PlainHistogram({
      name: "grpc_server_handling_seconds",
      help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
      labelNames: ["grpc_type", "grpc_service", "grpc_method"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.backendDuration = new PlainHistogram({
      name: "strata_backend_request_duration_seconds",
      help: "Time strata spent in each call to a backend database, by backend and operation.",
      labelNames: ["backend", "operation"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    const counter = (name: string, help: string, labelNames: string[] = []) => new Counter({ name, help, labelNames, registers });
    const tallied = (name: string, help: string) => {
      let tally: Tally | undefined;
      const c = new Counter({ name, help, registers, collect: () => tally?.flush() });
      return (tally = new Tally(c));
    };
    this.mvcc = {
      ranges: tallied("etcd_mvcc_range_total", "Total number of ranges seen by this member."),
      puts: tallied("etcd_mvcc_put_total", "Total number of puts seen by this member."),
      deletes: tallied("etcd_mvcc_delete_total", "Total number of deletes seen by this member."),
      txns: tallied("etcd_mvcc_txn_total", "Total number of txns seen by this member."),
    };
    // a database commit is both what etcd's backend commit and its WAL fsync measure: the write made durable
    this.commits = [
      new PlainHistogram({
        name: "etcd_disk_backend_commit_duration_seconds",
        help: "The latency distributions of commit called by backend (strata: a group commit to a database).",
        buckets: DISK_BUCKETS,
        registers,
      }).plain,
      new PlainHistogram({
        name: "etcd_disk_wal_fsync_duration_seconds",
        help: "The latency distributions of fsync called by WAL (strata: a group commit to a database, durable when it returns).",
        buckets: DISK_BUCKETS,
        registers,
      }).plain,
    ];
    this.slowApplies = counter("etcd_server_slow_apply_total", "The total number of slow apply requests (likely overloaded from slow disk).");
    // one member, no raft: what etcd reports when nothing of the kind happens
    counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen.");
    counter("etcd_server_proposals_failed_total", "The total number of failed proposals seen.");
    new Gauge({ name: "etcd_server_proposals_pending", help: "The current number of pending proposals to commit.", registers });
    // declared with no series, as on an etcd without peers: dashboards and alerts find them
    counter("etcd_network_peer_sent_failures_total", "The total number of send failures from peers.", ["To"]);
    new Histogram({
      name: "etcd_network_peer_round_trip_time_seconds",
      help: "Round-Trip-Time histogram between peers",
      labelNames: ["To"],
      buckets: Array.from({ length: 16 }, (_, i) => 0.0001 * 2 ** i),
      registers,
    });
  }

  /** etcd_server_version and etcd_cluster_version: the etcd version strata answers as */
  serverVersion(version: string): void {
    const registers = [this.registry];
    new Gauge({ name: "etcd_server_version", help: "Which version is running. 1 for 'server_version' label with current version.", labelNames: ["server_version"], registers })
      .set({ server_version: version }, 1);
    // etcd's cluster version is the members' lowest, at minor precision
    new Gauge({ name: "etcd_cluster_version", help: "Which version is running. 1 for 'cluster_version' label with current cluster version", labelNames: ["cluster_version"], registers })
      .set({ cluster_version: version.split(".").slice(0, 2).join(".") }, 1);
  }

  /** A request carried out: its ranges, puts and deletes; a txn when more than one. */
  mvccOps(ops: MvccOps): void {
    if (ops.ranges) this.mvcc.ranges.add(ops.ranges);
    if (ops.puts) this.mvcc.puts.add(ops.puts);
    if (ops.deletes) this.mvcc.deletes.add(ops.deletes);
    if (ops.ranges + ops.puts + ops.deletes > 1) this.mvcc.txns.add();
  }

  /** Every method served gets a zero series before its first call, as go-grpc-prometheus does. */
  declare(methods: GrpcMethod[]): void {
    for (const m of methods) {
      const labels = { grpc_method: m.method, grpc_service: m.service, grpc_type: m.type };
      this.started.inc(labels, 0);
      this.handled.inc({ grpc_code: "OK", ...labels }, 0);
    }
  }

  /** the client port's connections: open now, and refused past --max-connections since the start (read at each scrape) */
  clientConnections: () => { open: number; refused: number; heldBytes: number } = () => ({ open: 0, refused: 0, heldBytes: 0 });

  /** Watch streams open now. */
  get watchStreams(): number {
    return this.openWatchStreams;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  callStarted(c: GrpcMethod): void {
    this.seriesOf(c).started.add();
    if (c.service === WATCH_SERVICE) this.openWatchStreams++;
  }

  callFinished(c: GrpcMethod, code: string, seconds: number): void {
    const s = this.seriesOf(c);
    let handled = s.handled.get(code);
    if (!handled) s.handled.set(code, (handled = new Tally(this.handled.labels({ grpc_code: code, ...s.labels }))));
    handled.add();
    s.handling.observe(seconds);
    if (c.service === WATCH_SERVICE) this.openWatchStreams--;
  }

  /** The observer of `backend`'s calls of `operation`, bound to its series once. */
  backendCall = (backend: string, operation: string): ((seconds: number) => void) => {
    const key = `${backend}\u0000${operation}`;
    let series = this.backendSeries.get(key);
    if (!series) this.backendSeries.set(key, (series = this.backendDuration.series({ backend, operation })));
    const s = series;
    if (operation !== "write") return (seconds) => s.observe(seconds);
    return (seconds) => {
      s.observe(seconds);
      for (const h of this.commits) h.observe(seconds);
      if (seconds > SLOW_APPLY_SECONDS) this.slowApplies.inc();
    };
  };

  /** A method's series, bound to their labels once: every call would otherwise hash them again. */
  private seriesOf(c: GrpcMethod): MethodSeries {
    let s = this.methodSeries.get(c);
    if (!s) {
      // in etcd's order (client_golang sorts label names), so its text matches etcd's line for line
      const labels = { grpc_method: c.method, grpc_service: c.service, grpc_type: c.type };
      s = { labels, started: new Tally(this.started.labels(labels)), handling: this.handling.series(labels), handled: new Map() };
      this.methodSeries.set(c, s);
    }
    return s;
  }

  /** Registers the gauges that read strata's state at each scrape. */
  follow(s: MetricSources): void {
    const registers = [this.registry];
    const gauge = (name: string, help: string, read: () => number | bigint) =>
      new Gauge({ name, help, registers, collect() { this.set(Number(read())); } });
    /** a gauge summed over the backends that answered */
    const total = (name: string, help: string, pick: (b: Extract<BackendStats, { keys: bigint }>) => bigint) =>
      new Gauge({
        name,
        help,
        registers,
        async collect() {
          const answered = (await s.stats.get()).filter((b) => b.error === undefined);
          this.set(Number(answered.reduce((sum, b) => sum + pick(b), 0n)));
        },
      });
    const perBackend = (name: string, help: string, pick: (b: Extract<BackendStats, { keys: bigint }>) => bigint) =>
      new Gauge({
        name,
        help,
        labelNames: ["backend"],
        registers,
        async collect() {
          this.reset();
          for (const b of await s.stats.get()) if (b.error === undefined) this.set({ backend: b.name }, Number(pick(b)));
        },
      });
    const mirrored = (name: string, help: string, read: () => number) =>
      new Counter({ name, help, registers, collect() { this.reset(); this.inc(read()); } });

    gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", () => 1);
    gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", () => 1);
    gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", () => s.keyspace.revision);
    gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.", () => s.keyspace.compactRevision);
    gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", () => s.keyspace.watchers);
    gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.", () => this.watchStreams);
    gauge("strata_client_connections", "Client connections open now (HTTP/2 and HTTP/1.1).", () => this.clientConnections().open);
    gauge(
      "strata_client_connection_held_bytes",
      "Bytes held for HTTP/2 client connections now: request bytes received and not yet read, response bytes and frames queued and not yet sent.",
      () => this.clientConnections().heldBytes,
    );
    mirrored("strata_client_connections_refused_total", "HTTP/2 client connections refused with GOAWAY past --max-connections.", () => this.clientConnections().refused);
    total("etcd_debugging_mvcc_keys_total", "Total number of keys.", (b) => b.keys);
    total("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.", (b) => b.size);
    total("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.", (b) => b.inUse);
    // etcd's raft index, which its Status reports and strata reports as the revision
    gauge("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.", () => s.keyspace.revision);
    gauge("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.", () => s.keyspace.revision);
    // with a quota on every database: their sum, against which etcd's alerts set the total size
    const quotas = s.keyspace.quotas.map((q) => q.bytes);
    if (quotas.every((q) => q !== undefined)) {
      const sum = quotas.reduce((a, q) => a + q!, 0n);
      gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.", () => sum);
    }
    mirrored("etcd_debugging_lease_granted_total", "The total number of granted leases.", () => s.leases.counts.granted);
    mirrored("etcd_debugging_lease_revoked_total", "The total number of revoked leases.", () => s.leases.counts.revoked);

    new Gauge({
      name: "strata_backend_up",
      help: "Whether the backend answered the last time its figures were read (1) or not (0).",
      labelNames: ["backend"],
      registers,
      async collect() {
        for (const b of await s.stats.get()) this.set({ backend: b.name }, b.error === undefined ? 1 : 0);
      },
    });
    if (s.keyspace.autoGcCounts()) {
      // what storage-side garbage collection (--auto-gc) did, summed over the databases
      new Counter({
        name: "strata_auto_gc_total",
        help: "What storage-side garbage collection did: keys deleted, owner references stripped from dependents, deletions begun (deletionTimestamp set, finalizers waiting).",
        labelNames: ["action"],
        registers,
        collect() {
          this.reset();
          const c = s.keyspace.autoGcCounts() ?? { deleted: 0, referencesStripped: 0, deletionsStarted: 0 };
          this.inc({ action: "deleted" }, c.deleted);
          this.inc({ action: "reference_stripped" }, c.referencesStripped);
          this.inc({ action: "deletion_started" }, c.deletionsStarted);
        },
      });
    }
    perBackend("strata_backend_keys", "Live keys stored in the backend.", (b) => b.keys);
    perBackend("strata_backend_size_bytes", "Bytes the backend's database occupies.", (b) => b.size);
    perBackend("strata_backend_revision", "The backend's current revision.", (b) => b.revision);
    perBackend("strata_backend_compact_revision", "The backend's compact revision.", (b) => b.compactRevision);
  }
}
