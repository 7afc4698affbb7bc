// An upstream etcd as a whole Keyspace. etcd numbers its own revisions and answers its own
// ranges, so requests go to it whole and its answers come back as etcd gave them; watchers
// are relayed to it (watch-relay.ts) and it keeps the leases when it is the default
// backend (upstream-leases.ts).
import { create } from "@bufbuild/protobuf";
import {
  type AlarmRequest,
  type CompactionRequest,
  type DeleteRangeRequest,
  type HashKVRequest,
  type PutRequest,
  type RangeRequest,
  RangeRequestSchema,
  type TxnRequest,
} from "../../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { AlarmOut, Answer, BackendStats, Keyspace, LeaseCopies, LeaseKeeper, Probe, RangeOptions, StatusOut, WatchSession, WatchStream } from "../../keyspace/contract.ts";
import type { Deadline } from "../../mvcc/deadline.ts";
import { EtcdError } from "../../mvcc/errors.ts";
import type { DeleteOut, PutOut, RangeOut, TxnOut } from "../../mvcc/responses.ts";
import type { KeyRange, Rev } from "../../mvcc/types.ts";
import type { Upstream } from "./upstream.ts";
import { UpstreamLeases } from "./upstream-leases.ts";
import { WatchRelay } from "./watch-relay.ts";

export class EtcdKeyspace implements Keyspace {
  readonly leases: LeaseKeeper;
  private newest: Rev = 0n;

  constructor(
    /** its name among the backends */
    readonly name: string,
    readonly upstream: Upstream,
    /** the databases' copies of its leases, when there are databases beside it */
    leaseCopies?: LeaseCopies,
  ) {
    this.leases = new UpstreamLeases(upstream, leaseCopies);
  }

  /** the newest revision etcd answered with */
  get latestRevision(): Rev {
    return this.newest;
  }

  /** answered as objects: etcd's response is decoded on arrival anyway */
  async range(r: RangeRequest, o?: RangeOptions): Promise<RangeOut> {
    return this.relayed(await this.upstream.range(r, o?.deadline));
  }
  async put(r: PutRequest, deadline?: Deadline): Promise<PutOut> {
    return this.relayed(await this.upstream.put(r, deadline));
  }
  async deleteRange(r: DeleteRangeRequest, deadline?: Deadline): Promise<DeleteOut> {
    return this.relayed(await this.upstream.deleteRange(r, deadline));
  }
  async txn(r: TxnRequest, deadline?: Deadline): Promise<TxnOut> {
    return this.relayed(await this.upstream.txn(r, deadline)) as unknown as TxnOut;
  }
  async compact(r: CompactionRequest): Promise<Answer> {
    return this.relayed(await this.upstream.compact(r));
  }

  watch(stream: WatchStream): WatchSession {
    return new WatchRelay(this.upstream, stream);
  }

  /** etcd checks its own quota */
  async admitLease(): Promise<void> {}

  async status(): Promise<StatusOut> {
    return this.relayed(await this.upstream.status());
  }
  async alarm(r: AlarmRequest): Promise<AlarmOut> {
    return this.relayed(await this.upstream.alarm(r));
  }
  async defragment(): Promise<void> {
    await this.upstream.defragment();
  }
  async hash(): Promise<Answer & { hash: number }> {
    return this.relayed(await this.upstream.hash());
  }
  /** etcd's keys are etcd's: its snapshot is taken from it */
  snapshot<T>(): Promise<T> {
    return Promise.reject(upstreamSnapshotRefused(this.name));
  }
  async hashKV(r: HashKVRequest): Promise<Answer & { hash: number; compactRevision: Rev; hashRevision: Rev }> {
    return this.relayed(await this.upstream.hashKV(r));
  }

  backendsOf(_ranges: KeyRange[]): string[] {
    return [this.name];
  }
  get compactsIn(): string[] {
    return [this.name];
  }
  get leasesIn(): string {
    return this.name;
  }

  /** its own figures for the status page and metrics; etcd's Status does not tell its compact revision */
  async stats(): Promise<BackendStats> {
    const [name, url] = [this.name, this.upstream.name];
    try {
      const everything = create(RangeRequestSchema, { key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]), countOnly: true });
      const [s, all] = await Promise.all([this.upstream.status(), this.upstream.range(everything)]);
      return { name, url, keys: all.count, size: s.dbSize, inUse: s.dbSizeInUse, revision: s.header!.revision, compactRevision: 0n };
    } catch (err) {
      return { name, url, error: (err as Error).message };
    }
  }

  /** a cheap call that shows whether etcd answers */
  get probe(): Probe {
    return { name: this.name, url: this.upstream.name, probe: () => this.upstream.status() };
  }

  /**
   * etcd's answer in mvcc's shapes: without the message's type tag, so the api layer can
   * put its own header on it (nested messages stay as etcd sent them).
   */
  private relayed<T extends { header?: { revision: Rev } }>(m: T): Omit<T, "header" | "$typeName"> & Answer {
    const { $typeName: _, header, ...rest } = m as T & { $typeName?: string };
    const revision = header?.revision ?? 0n;
    if (revision > this.newest) this.newest = revision;
    return { ...rest, header: { revision } };
  }
}

/** Snapshot asked of a keyspace whose keys (some of them) are an upstream etcd's. */
export function upstreamSnapshotRefused(name: string, andDatabases = false): EtcdError {
  return new EtcdError(
    "FailedPrecondition",
    `strata: backend ${name} is an upstream etcd, whose keys strata does not hold; take its snapshot from that etcd (etcdctl --endpoints ETCD snapshot save)${andDatabases ? " and this one from a config without it" : ""}`,
  );
}
