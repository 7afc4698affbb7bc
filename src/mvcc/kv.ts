// The KV operations with etcd's semantics applied inside one backend write transaction:
// Put, DeleteRange, Txn, and the ranges a txn reads (post-processed by range.ts).
import type {
  Compare,
  DeleteRangeRequest,
  PutRequest,
  RangeRequest,
  TxnRequest,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { WriteTx } from "./backend.ts";
import { errors } from "./errors.ts";
import { compareBytes, isEmptyRange, successor, toKeyRange } from "./keyrange.ts";
import type { DeleteOut, PutOut, RangeOut, ResponseOpOut, TxnOut } from "./responses.ts";
import { finishRange, rangeFetch } from "./range.ts";
import { DELETE, type Event, type KeyValue, PUT, type Rev } from "./types.ts";

/** keys a DeleteRange reads (and deletes) at a time */
const DELETE_PAGE = 5000;

/** The state of one client transaction while it is applied: its revision and its events. */
export class Apply {
  changed = false;
  readonly events: Event[] = [];
  private sub = 0;
  /** the revision this transaction builds on: the store's, or higher once advanced */
  private base: Rev;

  constructor(
    readonly tx: WriteTx,
    /** the revision a write made after revision `after` gets */
    private readonly allocate: (after: Rev) => Rev = (after) => after + 1n,
  ) {
    this.base = tx.revision;
  }

  get beginRevision(): Rev {
    return this.base;
  }
  /** the revision this transaction writes at */
  get writeRevision(): Rev {
    return this.allocate(this.base);
  }
  /** the store's revision after this transaction; reads inside it report this (etcd counts its own pending writes) */
  get endRevision(): Rev {
    return this.changed ? this.writeRevision : this.base;
  }

  /**
   * Raises the store's revision to at least target before anything is written, so that
   * this and every later write here is numbered above it (keeps backends comparable).
   */
  async advanceTo(target: Rev): Promise<void> {
    if (this.changed || target <= this.base) return;
    await this.tx.setRevision(target);
    this.base = target;
  }

  /** The live version of key as this transaction sees it. */
  async get(key: Uint8Array): Promise<KeyValue | undefined> {
    return (await this.tx.range(toKeyRange(key, new Uint8Array(0)), { limit: 1 }))[0];
  }

  async range(r: RangeRequest): Promise<RangeOut> {
    const kr = toKeyRange(r.key, r.rangeEnd);
    const rev = this.endRevision;
    if (isEmptyRange(kr)) return finishRange(r, { kvs: [], count: 0n, revision: rev });
    const at = r.revision > 0n ? r.revision : undefined;
    const fetch = rangeFetch(r);
    const count = await this.tx.count(kr, at);
    const kvs = r.countOnly ? [] : await this.tx.range(kr, { revision: at, ...fetch });
    return finishRange(r, { kvs, count, revision: rev });
  }

  async put(p: PutRequest): Promise<PutOut> {
    const prev = await this.get(p.key);
    if ((p.ignoreValue || p.ignoreLease) && !prev) throw errors.keyNotFound();
    const rev = this.writeRevision;
    const kv: KeyValue = {
      key: p.key,
      value: p.ignoreValue ? prev!.value : p.value,
      lease: p.ignoreLease ? prev!.lease : p.lease,
      createRevision: prev ? prev.createRevision : rev,
      modRevision: rev,
      version: prev ? prev.version + 1n : 1n,
    };
    await this.tx.put(kv, prev, this.sub++);
    this.changed = true;
    this.events.push({ type: PUT, kv, prevKv: prev });
    return { header: { revision: rev }, prevKv: p.prevKv ? prev : undefined };
  }

  /**
   * Moves this transaction's further writes to the next revision, once it wrote: the
   * storage-side garbage collector gives each of its changes a revision of its own, as the
   * controller manager's collector's writes would have (and so may change a key twice).
   */
  nextRevision(): void {
    if (!this.changed) return;
    this.base = this.writeRevision;
    this.sub = 0;
  }

  /** Writes a new value for a live key as a put would, keeping its lease (the storage-side garbage collector's edits). */
  async replace(prev: KeyValue, value: Uint8Array): Promise<void> {
    const rev = this.writeRevision;
    const kv: KeyValue = { key: prev.key, value, lease: prev.lease, createRevision: prev.createRevision, modRevision: rev, version: prev.version + 1n };
    await this.tx.put(kv, prev, this.sub++);
    this.changed = true;
    this.events.push({ type: PUT, kv, prevKv: prev });
  }

  async deleteRange(d: DeleteRangeRequest): Promise<DeleteOut> {
    const kr = toKeyRange(d.key, d.rangeEnd);
    const kvs: KeyValue[] = [];
    // read and deleted a page at a time: a backend whose statements run on the event loop
    // (SQLite) pauses between them, so a large delete does not stop other clients for its
    // whole duration; all at this transaction's one revision
    for (let from = kr; !isEmptyRange(from);) {
      const page = await this.tx.range(from, { limit: DELETE_PAGE });
      await this.deleteKvs(page);
      for (const kv of page) kvs.push(kv);
      if (page.length < DELETE_PAGE) break;
      from = { start: successor(page.at(-1)!.key), end: kr.end };
    }
    return { header: { revision: this.endRevision }, deleted: BigInt(kvs.length), prevKvs: d.prevKv ? kvs : [] };
  }

  /** deletes live keys at this transaction's revision (also used when a lease goes) */
  async deleteKvs(kvs: KeyValue[]): Promise<void> {
    const rev = this.writeRevision;
    for (const prev of kvs) {
      await this.tx.delete(prev, rev, this.sub++);
      this.changed = true;
      this.events.push({
        type: DELETE,
        kv: { key: prev.key, createRevision: 0n, modRevision: rev, version: 0n, lease: 0n, value: new Uint8Array(0) },
        prevKv: prev,
      });
    }
  }

  /** Persists the new revision if anything was written; returns the header revision. */
  async finish(): Promise<Rev> {
    if (this.changed) await this.tx.setRevision(this.writeRevision);
    return this.endRevision;
  }

  async txn(r: TxnRequest): Promise<TxnOut> {
    // Every compare along the taken path is evaluated on the state before the txn.
    const path = await this.comparePath(r);
    if (!isReadOnly(r)) await this.checkPuts(r, path.slice());
    this.checkRanges(r, path.slice());
    return this.applyTxn(r, path);
  }

  private async comparePath(r: TxnRequest): Promise<boolean[]> {
    const ok = await this.compares(r.compare);
    const path = [ok];
    for (const op of ok ? r.success : r.failure) {
      if (op.request.case === "requestTxn") path.push(...(await this.comparePath(op.request.value)));
    }
    return path;
  }

  private async compares(cs: Compare[]): Promise<boolean> {
    for (const c of cs) if (!(await this.compare(c))) return false;
    return true;
  }

  private async compare(c: Compare): Promise<boolean> {
    const kr = toKeyRange(c.key, c.rangeEnd);
    let kvs: KeyValue[];
    if (c.rangeEnd.length === 0) {
      const kv = await this.get(c.key);
      kvs = kv ? [kv] : [];
    } else {
      kvs = isEmptyRange(kr) ? [] : await this.tx.range(kr);
    }
    if (kvs.length === 0) {
      // a missing key has no value to compare: such a compare always fails
      if (c.target === CMP_VALUE) return false;
      return compareKv(c, undefined);
    }
    return kvs.every((kv) => compareKv(c, kv));
  }

  /** ignore_value/ignore_lease need an existing key and a lease must exist, checked before applying */
  private async checkPuts(r: TxnRequest, path: boolean[]): Promise<void> {
    const ok = path.shift()!;
    for (const op of ok ? r.success : r.failure) {
      if (op.request.case === "requestTxn") await this.checkPuts(op.request.value, path);
      if (op.request.case !== "requestPut") continue;
      // most puts ask nothing to be checked: no call (and no promise) for them
      const p = op.request.value;
      if (p.ignoreValue || p.ignoreLease || p.lease !== 0n) await this.checkPut(p);
    }
  }

  async checkPut(p: PutRequest): Promise<void> {
    if ((p.ignoreValue || p.ignoreLease) && !(await this.get(p.key))) throw errors.keyNotFound();
    if (p.lease !== 0n && !(await this.tx.leaseExists(p.lease))) throw errors.leaseNotFound();
  }

  private checkRanges(r: TxnRequest, path: boolean[]): void {
    const ok = path.shift()!;
    for (const op of ok ? r.success : r.failure) {
      if (op.request.case === "requestTxn") this.checkRanges(op.request.value, path);
      if (op.request.case !== "requestRange") continue;
      const rev = op.request.value.revision;
      if (rev === 0n) continue;
      if (rev > this.beginRevision) throw errors.futureRevision();
      if (rev < this.tx.compactRevision) throw errors.compacted();
    }
  }

  private async applyTxn(r: TxnRequest, path: boolean[]): Promise<TxnOut> {
    const succeeded = path.shift()!;
    const responses: ResponseOpOut[] = [];
    for (const op of succeeded ? r.success : r.failure) {
      const req = op.request;
      switch (req.case) {
        case "requestRange":
          responses.push({ response: { case: "responseRange", value: await this.range(req.value) } });
          break;
        case "requestPut":
          responses.push({ response: { case: "responsePut", value: await this.put(req.value) } });
          break;
        case "requestDeleteRange":
          responses.push({ response: { case: "responseDeleteRange", value: await this.deleteRange(req.value) } });
          break;
        case "requestTxn":
          responses.push({ response: { case: "responseTxn", value: await this.applyTxn(req.value, path) } });
          break;
      }
    }
    // nested txn responses carry an empty header, as etcd's do; the caller sets the top one
    return { header: { revision: 0n }, succeeded, responses };
  }
}

const CMP_EQUAL = 0, CMP_GREATER = 1, CMP_LESS = 2, CMP_NOT_EQUAL = 3;
const CMP_VERSION = 0, CMP_CREATE = 1, CMP_MOD = 2, CMP_VALUE = 3, CMP_LEASE = 4;

function compareKv(c: Compare, kv: KeyValue | undefined): boolean {
  const u = c.targetUnion;
  let result: number;
  const num = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);
  switch (c.target) {
    case CMP_VALUE:
      result = compareBytes(kv?.value ?? new Uint8Array(0), u.case === "value" ? u.value : new Uint8Array(0));
      break;
    case CMP_CREATE:
      result = num(kv?.createRevision ?? 0n, u.case === "createRevision" ? u.value : 0n);
      break;
    case CMP_MOD:
      result = num(kv?.modRevision ?? 0n, u.case === "modRevision" ? u.value : 0n);
      break;
    case CMP_VERSION:
      result = num(kv?.version ?? 0n, u.case === "version" ? u.value : 0n);
      break;
    case CMP_LEASE:
      result = num(kv?.lease ?? 0n, u.case === "lease" ? u.value : 0n);
      break;
    default:
      result = 0;
  }
  switch (c.result) {
    case CMP_EQUAL:
      return result === 0;
    case CMP_NOT_EQUAL:
      return result !== 0;
    case CMP_GREATER:
      return result > 0;
    case CMP_LESS:
      return result < 0;
    default:
      return true;
  }
}

/** The single keys a txn compares, reads or writes (a backend may fetch them all at once). */
export function txnKeys(r: TxnRequest, out: Uint8Array[] = []): Uint8Array[] {
  for (const c of r.compare) if (c.rangeEnd.length === 0) out.push(c.key);
  for (const op of [...r.success, ...r.failure]) {
    const q = op.request;
    switch (q.case) {
      case "requestTxn":
        txnKeys(q.value, out);
        break;
      case "requestPut":
        out.push(q.value.key);
        break;
      case "requestRange":
      case "requestDeleteRange":
        if (q.value.rangeEnd.length === 0) out.push(q.value.key);
    }
  }
  return out;
}

/** A txn whose both branches only read (nested txns count as writes, as in etcd). */
export function isReadOnly(r: TxnRequest): boolean {
  return [...r.success, ...r.failure].every((op) => op.request.case === "requestRange");
}
