// etcdserverpb.KV: validation as etcd's gRPC layer does it, then the caller's permissions
// once auth is on (auth-store.ts), then the keyspace.
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  DeleteRangeRequestSchema,
  KV,
  PutRequestSchema,
  type RangeRequest,
  type TxnRequest,
  TxnRequestSchema,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { checkDelete, checkPut, checkRange, checkTxn } from "./checks.ts";
import { type Deadline, requestDeadline } from "../mvcc/deadline.ts";
import type { Keyspace } from "../keyspace/contract.ts";
import type { AuthStore } from "./auth-store.ts";
import type { AuthInfo } from "./auth-tokens.ts";
import { caller } from "./caller.ts";
import { etcdErrors } from "./errors.ts";
import { header, type ServerIdentity } from "./header.ts";
import { checkRequestSize, type Limits } from "./limits.ts";
import { type MvccCounter, ONE_DELETE, ONE_PUT, ONE_RANGE, txnCounts } from "./mvcc-counts.ts";
import { rangeStreamHandler, type RangeStreamParts } from "./range-stream.ts";

type Ctx = Pick<HandlerContext, "timeoutMs" | "values">;

/**
 * KV.Range. `encodedKvs`: the answer may carry its key-values already encoded, which only
 * range-frame.ts writes (the unary path; Connect's serializer would drop them): see
 * RangeOptions in keyspace/contract.ts. Each answer counts in etcd's mvcc counts
 * (mvcc-counts.ts), here rather than in a wrapper: one async layer less on every call.
 */
export function kvRange(keyspace: Keyspace, id: ServerIdentity, auth: AuthStore, counter: MvccCounter, encodedKvs = false) {
  return etcdErrors(async (r: RangeRequest, ctx?: Ctx) => {
    checkRange(r);
    const ai = auth.identify(caller(ctx));
    auth.checkRange(ai, r.key, r.rangeEnd);
    const out = await keyspace.range(r, { deadline: deadline(ctx), encodedKvs });
    auth.checkUnchanged(ai);
    counter.mvccOps(ONE_RANGE);
    return { ...out, header: header(id, out.header.revision) };
  });
}

/** KV; every answer counts in etcd's mvcc counts (see kvRange) */
export function kvService(keyspace: Keyspace, id: ServerIdentity, limits: Limits, streams: RangeStreamParts, auth: AuthStore, counter: MvccCounter): ServiceImpl<typeof KV> {
  /** etcd's checkLeasePuts: a lease may be attached only by a user who may write every key it already holds */
  const checkLease = async (ai: AuthInfo | undefined, lease: bigint) => {
    if (!auth.enabled || lease === 0n || auth.isRoot(ai)) return;
    const t = await keyspace.leases.timeToLive(lease, true);
    for (const key of t.keys) auth.checkPut(ai, key);
  };
  return {
    range: kvRange(keyspace, id, auth, counter),
    rangeStream: rangeStreamHandler(streams),
    put: etcdErrors(async (r, ctx) => {
      checkPut(r);
      checkRequestSize(limits, PutRequestSchema, r);
      const ai = auth.identify(caller(ctx));
      auth.checkPut(ai, r.key);
      await checkLease(ai, r.lease);
      if (r.prevKv) auth.checkRange(ai, r.key, new Uint8Array(0));
      const out = await keyspace.put(r, deadline(ctx));
      counter.mvccOps(ONE_PUT);
      return { ...out, header: header(id, out.header.revision) };
    }),
    deleteRange: etcdErrors(async (r, ctx) => {
      checkDelete(r);
      checkRequestSize(limits, DeleteRangeRequestSchema, r);
      const ai = auth.identify(caller(ctx));
      auth.checkDelete(ai, r.key, r.rangeEnd);
      if (r.prevKv) auth.checkRange(ai, r.key, r.rangeEnd);
      const out = await keyspace.deleteRange(r, deadline(ctx));
      counter.mvccOps(ONE_DELETE);
      return { ...out, header: header(id, out.header.revision) };
    }),
    txn: etcdErrors(async (r, ctx) => {
      checkTxn(r, limits.maxTxnOps);
      checkRequestSize(limits, TxnRequestSchema, r);
      const ai = auth.identify(caller(ctx));
      auth.checkTxn(ai, r);
      const out = await keyspace.txn(r, deadline(ctx));
      // a txn that only reads is served as a read, checked again after it (etcd's doSerialize)
      if (readOnly(r)) auth.checkUnchanged(ai);
      counter.mvccOps(txnCounts(r, out));
      return { ...out, header: header(id, out.header.revision) };
    }),
    compact: etcdErrors(async (r, ctx) => {
      // etcd asks no permission of a compaction, only a valid token if one is given
      auth.identify(caller(ctx));
      const out = await keyspace.compact(r);
      return { header: header(id, out.header.revision) };
    }),
  };
}

function readOnly(r: TxnRequest): boolean {
  return [...r.success, ...r.failure].every((op) => op.request.case === "requestRange");
}

/** the request's deadline: ours, or the client's (grpc-timeout) when sooner */
function deadline(ctx: Pick<HandlerContext, "timeoutMs"> | undefined): Deadline {
  return requestDeadline(ctx?.timeoutMs());
}
