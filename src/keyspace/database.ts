// The databases as one Keyspace: the router (routing, merged reads and commit order, live
// moves) with the keyspace-wide services wired to it in one place — the watch hub fed by
// the merged commits, the leases kept in the default database, automatic compaction, and
// commits by other strata processes on the same databases followed.
import { crc32 } from "node:zlib";
import type {
  AlarmRequest,
  CompactionRequest,
  DeleteRangeRequest,
  HashKVRequest,
  PutRequest,
  RangeRequest,
  TxnRequest,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { AlarmRequest_AlarmAction } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { type AlarmMember, AlarmType } from "../mvcc/alarms.ts";
import type { Deadline } from "../mvcc/deadline.ts";
import { toKeyRange } from "../mvcc/keyrange.ts";
import { finishRange, rangeQuery } from "../mvcc/range.ts";
import type { DeleteOut, PutOut, RangeOut, TxnOut } from "../mvcc/responses.ts";
import { errors } from "../mvcc/errors.ts";
import { checkRevision } from "../mvcc/revisions.ts";
import type { KeyRange, Rev } from "../mvcc/types.ts";
import type { Router } from "../router/router.ts";
import type { CustomFieldLookup, Selection } from "../selectors/index.ts";
import { AutoCompactor, type Retention } from "./compactor.ts";
import type { AlarmOut, Answer, Keyspace, LeaseCopies, LeaseKeeper, LeaseService, PageReader, RangeOptions, StatusOut, WatchSession, WatchStream } from "./contract.ts";
import type { SnapshotSource } from "../snapshot/index.ts";
import { databaseSnapshot } from "./database-snapshot.ts";
import { hashKV } from "./hash-kv.ts";
import { DatabaseWatch } from "./database-watch.ts";
import { selectInPages } from "./selected-range.ts";
import { DatabaseLeaseCopies, DatabaseLeases } from "./leases.ts";
import { WatchHub } from "./watch-hub.ts";

export interface DatabaseKeyspaceOptions {
  /** automatic compaction, as etcd's --auto-compaction-mode/retention */
  compaction?: Retention;
  /** how often watchers that asked for progress notifications hear where they are */
  progressIntervalMs: number;
  /** upstream etcds beside the databases: each gets a copy of every lease kept here */
  upstreamLeases?: LeaseService[];
}

export class DatabaseKeyspace implements Keyspace {
  readonly hub: WatchHub;
  /** the leases, when the default backend is a database */
  private readonly keeper: DatabaseLeases | undefined;
  private readonly compactor: AutoCompactor | undefined;
  private stops: Array<() => void> = [];

  constructor(
    readonly router: Router,
    private readonly options: DatabaseKeyspaceOptions,
  ) {
    this.hub = new WatchHub(router, () => ({ revision: router.revision, latest: router.latestRevision, compactRevision: router.compactRevision }));
    router.onCommit((c) => this.hub.publish(c.revision, c.events));
    const primary = router.primary;
    this.keeper = primary &&
      new DatabaseLeases({ primary, others: router.parts.filter((p) => p !== primary) }, () => router.latestRevision, options.upstreamLeases);
    this.compactor = options.compaction && router.parts.length > 0
      ? new AutoCompactor({
        get revision() {
          return router.revision;
        },
        get compactRevision() {
          return router.compactRevision;
        },
        compact: (c) => router.compact(c),
      }, options.compaction)
      : undefined;
  }

  /** Starts following other processes' commits, compaction and progress notifications (the leases start with the keyspace that keeps them). */
  start(): void {
    // commits by other strata processes on the same databases reach this one's watchers
    this.stops.push(this.router.followExternalCommits());
    this.compactor?.start();
    const progress = setInterval(() => this.hub.progressTick(), this.options.progressIntervalMs);
    this.stops.push(() => clearInterval(progress), () => this.compactor?.stop());
  }

  stop(): void {
    for (const s of this.stops.splice(0)) s();
  }

  get latestRevision(): Rev {
    return this.router.latestRevision;
  }

  /** etcd's post-processing runs here, once, over what the router read */
  async range(r: RangeRequest, o: RangeOptions = {}): Promise<RangeOut> {
    return finishRange(r, await this.router.read(rangeQuery(r, o), o.deadline));
  }
  /**
   * With the selection applied in the databases: answered as they give it when they
   * apply it exactly, else from pages they narrow as far as they can, checked here.
   */
  async selectedRange(r: RangeRequest, s: Selection, o: RangeOptions = {}, custom?: CustomFieldLookup): Promise<RangeOut> {
    const exact = await this.router.read({ ...rangeQuery(r, o), select: { selection: s, exactOnly: true } }, o.deadline);
    if (exact.selected === "exact") return finishRange(r, exact);
    return selectInPages(r, s, custom, this.narrowedPages(r, s, o.deadline));
  }

  narrowedPages(r: RangeRequest, s: Selection, deadline?: Deadline): PageReader {
    const { end } = toKeyRange(r.key, r.rangeEnd);
    return async (start, revision, limit) => {
      const page = await this.router.read({
        range: { start, end },
        revision,
        limit: Number(limit) + 1,
        countOnly: false,
        keysOnly: false,
        select: { selection: s, exactOnly: false },
      }, deadline);
      return { kvs: page.kvs.slice(0, Number(limit)), more: page.kvs.length > limit, revision: page.revision };
    };
  }
  put(r: PutRequest, deadline?: Deadline): Promise<PutOut> {
    return this.router.put(r, deadline);
  }
  deleteRange(r: DeleteRangeRequest, deadline?: Deadline): Promise<DeleteOut> {
    return this.router.deleteRange(r, deadline);
  }
  txn(r: TxnRequest, deadline?: Deadline): Promise<TxnOut> {
    return this.router.txn(r, deadline);
  }
  compact(r: CompactionRequest): Promise<Answer> {
    return this.router.compact(r);
  }

  watch(stream: WatchStream): WatchSession {
    return new DatabaseWatch(this.hub, this.router, stream);
  }

  get leases(): LeaseKeeper {
    if (!this.keeper) throw new Error("strata: the default backend keeps the leases, and it is not a database");
    return this.keeper;
  }

  /** the databases' copies of leases an upstream etcd keeps (all of them hold copies then); none without databases */
  get leaseCopies(): LeaseCopies | undefined {
    const others = this.router.parts.filter((p) => p !== this.router.primary);
    return others.length > 0 ? new DatabaseLeaseCopies(others) : undefined;
  }

  admitLease(): Promise<void> {
    return this.router.admitLease();
  }

  async status(): Promise<StatusOut> {
    const size = await this.router.size();
    const revision = this.router.latestRevision;
    return {
      header: { revision },
      dbSize: size.size,
      dbSizeInUse: size.inUse,
      raftIndex: BigInt(revision),
      raftAppliedIndex: BigInt(revision),
      errors: this.router.alarms.list().map(alarmText),
      isLearner: false,
    };
  }

  /** strata's own alarms (NOSPACE, mvcc/alarms.ts) */
  async alarm(r: AlarmRequest): Promise<AlarmOut> {
    const own: AlarmMember[] = [];
    const alarms = this.router.alarms;
    if (r.action === AlarmRequest_AlarmAction.GET) own.push(...alarms.list(r.alarm));
    else if (r.action === AlarmRequest_AlarmAction.ACTIVATE) own.push(alarms.activate(r.memberID, r.alarm));
    else if (r.action === AlarmRequest_AlarmAction.DEACTIVATE) own.push(...[alarms.deactivate(r.memberID, r.alarm)].filter((a) => a !== undefined));
    return { header: { revision: this.router.latestRevision }, alarms: own.map((a) => ({ memberID: a.memberId, alarm: a.alarm })) };
  }

  defragment(): Promise<void> {
    return this.router.defragment();
  }

  hash(): Promise<Answer & { hash: number }> {
    return this.hashAt(0n);
  }

  async hashKV(r: HashKVRequest): Promise<Answer & { hash: number; compactRevision: Rev; hashRevision: Rev }> {
    const compactRevision = this.router.compactRevision;
    const at = checkRevision(r.revision, this.router.latestRevision, compactRevision);
    // etcd hashes above the compaction only: the compact revision itself is compacted here
    if (r.revision > 0n && r.revision <= compactRevision) throw errors.compacted();
    const hash = await hashKV(this.router, at, compactRevision);
    // etcd's compact revision is -1 until its first compaction
    return { header: { revision: this.router.latestRevision }, hash, compactRevision: compactRevision === 0n ? -1n : compactRevision, hashRevision: at };
  }

  snapshot<T>(write: (source: SnapshotSource) => Promise<T>): Promise<T> {
    return databaseSnapshot(this.router, this, write);
  }

  /** crc32 over every live key and value at rev, in key order */
  private async hashAt(rev: Rev): Promise<Answer & { hash: number }> {
    const res = await this.router.all(rev);
    let h = 0;
    for (const kv of res.kvs) h = crc32(kv.value, crc32(kv.key, h));
    return { header: { revision: res.revision }, hash: h };
  }

  backendsOf(ranges: KeyRange[]): string[] {
    const names = new Set<string>();
    for (const r of ranges) for (const n of this.router.backendsFor(r)) names.add(n);
    return [...names];
  }
  get compactsIn(): string[] {
    return this.router.parts.map((p) => p.name);
  }
  get leasesIn(): string {
    return this.router.routing.defaultBackend;
  }
}

/** an alarm as etcd's Status lists it: the AlarmMember in protobuf's compact text form */
function alarmText(a: AlarmMember): string {
  return `memberID:${a.memberId} alarm:${AlarmType[a.alarm]} `;
}
