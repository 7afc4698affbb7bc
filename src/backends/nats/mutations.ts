// A write batch as the log carries it: the WriteTx calls that changed something,
// recorded while the batch ran, and replayed by every other strata process into its
// own copy. Replaying the same calls in the same order gives the same state.
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import type { OwnerLookup, WriteTx } from "../../mvcc/backend.ts";
import type { KeyRange, KeyValue, LeaseRecord, Rev } from "../../mvcc/types.ts";
import { BatchSchema, type Mutation, MutationSchema } from "../../gen/strata/nats/v1/log_pb.ts";

const EMPTY = new Uint8Array(0);

/** A WriteTx that passes every call through and records the ones that change state. */
export class RecordingTx implements WriteTx {
  readonly mutations: Mutation[] = [];

  constructor(private readonly tx: WriteTx) {}

  get revision(): Rev {
    return this.tx.revision;
  }
  get compactRevision(): Rev {
    return this.tx.compactRevision;
  }
  /** lookups only read: nothing to record */
  get owners(): OwnerLookup | undefined {
    return this.tx.owners;
  }

  private record(change: MessageInitShape<typeof MutationSchema>["change"]): void {
    this.mutations.push(create(MutationSchema, { change }));
  }

  range(range: KeyRange, opts?: { revision?: Rev; limit?: number; keysOnly?: boolean }): Promise<KeyValue[]> {
    return this.tx.range(range, opts);
  }
  count(range: KeyRange, revision?: Rev): Promise<bigint> {
    return this.tx.count(range, revision);
  }
  leaseExists(id: Rev): Promise<boolean> {
    return this.tx.leaseExists(id);
  }
  leaseExpired(id: Rev, now: number): Promise<boolean> {
    return this.tx.leaseExpired(id, now);
  }
  leaseKeys(id: Rev): Promise<KeyValue[]> {
    return this.tx.leaseKeys(id);
  }

  async put(kv: KeyValue, prev: KeyValue | undefined, sub: number): Promise<void> {
    await this.tx.put(kv, prev, sub);
    this.record({ case: "put", value: { ...kv, prevModRevision: prev?.modRevision ?? 0n, sub } });
  }
  async delete(prev: KeyValue, rev: Rev, sub: number): Promise<void> {
    await this.tx.delete(prev, rev, sub);
    this.record({ case: "delete", value: { key: prev.key, prevModRevision: prev.modRevision, revision: rev, sub } });
  }
  async leaseInsert(lease: LeaseRecord): Promise<void> {
    await this.tx.leaseInsert(lease);
    this.record({ case: "leaseInsert", value: { id: lease.id, ttl: lease.ttl, expiresAt: BigInt(lease.expiresAt) } });
  }
  async leaseDelete(id: Rev): Promise<void> {
    await this.tx.leaseDelete(id);
    this.record({ case: "leaseDelete", value: id });
  }
  async forget(key: Uint8Array): Promise<void> {
    await this.tx.forget(key);
    this.record({ case: "forget", value: key });
  }
  async setRevision(rev: Rev): Promise<void> {
    await this.tx.setRevision(rev);
    this.record({ case: "revision", value: rev });
  }
  async setCompactRevision(rev: Rev): Promise<void> {
    await this.tx.setCompactRevision(rev);
    this.record({ case: "compactRevision", value: rev });
  }
}

export function encodeBatch(mutations: Mutation[]): Uint8Array {
  return toBinary(BatchSchema, create(BatchSchema, { mutations }));
}

export function decodeBatch(bytes: Uint8Array): Mutation[] {
  return fromBinary(BatchSchema, bytes).mutations;
}

/** Makes the recorded calls again on tx; returns the compact revision the batch set, if any. */
export async function replay(mutations: Mutation[], tx: WriteTx): Promise<Rev | undefined> {
  let compacted: Rev | undefined;
  for (const { change: c } of mutations) {
    switch (c.case) {
      case "put": {
        const p = c.value;
        const kv: KeyValue = {
          key: p.key, createRevision: p.createRevision, modRevision: p.modRevision, version: p.version, lease: p.lease, value: p.value,
        };
        await tx.put(kv, p.prevModRevision === 0n ? undefined : stub(p.key, p.prevModRevision), p.sub);
        break;
      }
      case "delete":
        await tx.delete(stub(c.value.key, c.value.prevModRevision), c.value.revision, c.value.sub);
        break;
      case "leaseInsert":
        await tx.leaseInsert({ id: c.value.id, ttl: c.value.ttl, expiresAt: Number(c.value.expiresAt) });
        break;
      case "leaseDelete":
        await tx.leaseDelete(c.value);
        break;
      case "forget":
        await tx.forget(c.value);
        break;
      case "revision":
        await tx.setRevision(c.value);
        break;
      case "compactRevision":
        await tx.setCompactRevision(c.value);
        compacted = c.value;
        break;
      default:
        throw new Error("unknown mutation in the log (written by a newer strata?)");
    }
  }
  return compacted;
}

/** the previous version as far as a store needs it to link history: its key and revision */
function stub(key: Uint8Array, modRevision: Rev): KeyValue {
  return { key, modRevision, createRevision: 0n, version: 0n, lease: 0n, value: EMPTY };
}
