// Request validation exactly as etcd's gRPC layer does it, before anything is applied:
// the same checks in the same order, so the same request gets the same error.
import {
  type DeleteRangeRequest,
  type PutRequest,
  type RangeRequest,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type RequestOp,
  type TxnRequest,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { errors, EtcdError } from "../mvcc/errors.ts";
import { parseSelection } from "../selectors/index.ts";
import { bytesEqual, compareBytes, keyString } from "../mvcc/keyrange.ts";

export function checkRange(r: RangeRequest): void {
  if (r.key.length === 0) throw errors.emptyKey();
  if (r.sortOrder < 0 || r.sortOrder > 2) throw errors.invalidSortOption();
  if (r.sortTarget < 0 || r.sortTarget > 4) throw errors.invalidSortOption();
  checkSelectors(r);
}

/**
 * etcd 3.7's RangeStream takes a Range's request, and refuses what it would have to hold
 * whole to answer: a sort with an order (other than by key, ascending) and revision filters.
 */
export function checkRangeStream(r: RangeRequest): void {
  checkRange(r);
  const defaultOrder = r.sortOrder === RangeRequest_SortOrder.NONE ||
    (r.sortTarget === RangeRequest_SortTarget.KEY && r.sortOrder === RangeRequest_SortOrder.ASCEND);
  if (!defaultOrder) throw new EtcdError("Unimplemented", "RangeStream does not support custom sort orders");
  if (r.minModRevision !== 0n || r.maxModRevision !== 0n || r.minCreateRevision !== 0n || r.maxCreateRevision !== 0n) {
    throw new EtcdError("Unimplemented", "RangeStream does not support revision filters");
  }
}

/**
 * HariKube's label/field selectors (a Range's or a Watch's), which etcd does not have: a
 * malformed one is InvalidArgument naming the selector and the position of the error.
 */
export function checkSelectors(r: { labelSelector: string; fieldSelector: string }): void {
  // a SelectorError: errors.ts answers it
  if (r.labelSelector !== "" || r.fieldSelector !== "") parseSelection(r.labelSelector, r.fieldSelector);
}

export function checkPut(r: PutRequest): void {
  if (r.key.length === 0) throw errors.emptyKey();
  if (r.ignoreValue && r.value.length !== 0) throw errors.valueProvided();
  if (r.ignoreLease && r.lease !== 0n) throw errors.leaseProvided();
}

export function checkDelete(r: DeleteRangeRequest): void {
  if (r.key.length === 0) throw errors.emptyKey();
}

export function checkTxn(r: TxnRequest, maxTxnOps: number): void {
  checkTxnOps(r, maxTxnOps);
  // overlap checks come after the cheap ones to avoid quadratic work on bad requests
  checkIntervals(r.success);
  checkIntervals(r.failure);
}

function checkTxnOps(r: TxnRequest, maxTxnOps: number): void {
  const opc = Math.max(r.compare.length, r.success.length, r.failure.length);
  if (opc > maxTxnOps) throw errors.tooManyOps();
  for (const c of r.compare) if (c.key.length === 0) throw errors.emptyKey();
  for (const op of r.success) checkOp(op, maxTxnOps - opc);
  for (const op of r.failure) checkOp(op, maxTxnOps - opc);
}

function checkOp(op: RequestOp, maxTxnOps: number): void {
  switch (op.request.case) {
    case "requestRange":
      return checkRange(op.request.value);
    case "requestPut":
      return checkPut(op.request.value);
    case "requestDeleteRange":
      return checkDelete(op.request.value);
    case "requestTxn":
      return checkTxnOps(op.request.value, maxTxnOps);
    default:
      // an empty operation: etcd answers "key not found"
      throw errors.keyNotFound();
  }
}

/** A deleted interval [start, end), or a point when end is undefined (etcd's affine intervals). */
interface Interval {
  start: Uint8Array;
  end: Uint8Array | undefined;
}

function intersects(dels: Interval[], key: Uint8Array): boolean {
  return dels.some((d) =>
    d.end === undefined
      ? bytesEqual(d.start, key)
      : compareBytes(d.start, key) <= 0 && compareBytes(key, d.end) < 0
  );
}

/**
 * etcd rejects a txn that puts one key twice, or puts a key that the same txn deletes,
 * along any path through nested txns (then/else branches are exclusive, so a key may
 * be put in both). Ranges compare bytes literally, as etcd's interval tree does.
 */
function checkIntervals(ops: RequestOp[]): { puts: Set<string>; dels: Interval[] } {
  const dels: Interval[] = [];
  for (const op of ops) {
    if (op.request.case !== "requestDeleteRange") continue;
    const d = op.request.value;
    dels.push({ start: d.key, end: d.rangeEnd.length !== 0 ? d.rangeEnd : undefined });
  }
  const puts = new Set<string>();
  for (const op of ops) {
    if (op.request.case !== "requestTxn") continue;
    const then = checkIntervals(op.request.value.success);
    const otherwise = checkIntervals(op.request.value.failure);
    for (const k of then.puts) {
      if (puts.has(k) || intersects(dels, fromKeyString(k))) throw errors.duplicateKey();
      puts.add(k);
    }
    for (const k of otherwise.puts) {
      if (puts.has(k) && !then.puts.has(k)) throw errors.duplicateKey();
      if (intersects(dels, fromKeyString(k))) throw errors.duplicateKey();
      puts.add(k);
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const op of ops) {
    if (op.request.case !== "requestPut") continue;
    const k = op.request.value.key;
    const s = keyString(k);
    if (puts.has(s) || intersects(dels, k)) throw errors.duplicateKey();
    puts.add(s);
  }
  return { puts, dels };
}

// back from keyString (latin1 maps every byte to one char and back)
const fromKeyString = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));
