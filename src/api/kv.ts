// etcdserverpb.KV: validation as etcd's gRPC layer does it, then the keyspace.
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  DeleteRangeRequestSchema,
  KV,
  PutRequestSchema,
  type RangeRequest,
  TxnRequestSchema,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { checkDelete, checkPut, checkRange, checkTxn } from "./checks.ts";
import { type Deadline, requestDeadline } from "../mvcc/deadline.ts";
import type { Keyspace } from "../keyspace/contract.ts";
import { etcdErrors } from "./errors.ts";
import { header, type ServerIdentity } from "./header.ts";
import { checkRequestSize, type Limits } from "./limits.ts";
import { rangeStreamHandler, type RangeStreamParts } from "./range-stream.ts";

/**
 * KV.Range. `encode`: the answer may carry its key-values already encoded, which only
 * range-frame.ts writes (the unary path; Connect's serializer would drop them).
 */
export function kvRange(keyspace: Keyspace, id: ServerIdentity, encode = false) {
  return etcdErrors(async (r: RangeRequest, ctx?: Pick<HandlerContext, "timeoutMs">) => {
    checkRange(r);
    const out = await keyspace.range(r, deadline(ctx), encode);
    return { ...out, header: header(id, out.header.revision) };
  });
}

export function kvService(keyspace: Keyspace, id: ServerIdentity, limits: Limits, streams: RangeStreamParts): ServiceImpl<typeof KV> {
  return {
    range: kvRange(keyspace, id),
    rangeStream: rangeStreamHandler(streams),
    put: etcdErrors(async (r, ctx) => {
      checkPut(r);
      checkRequestSize(limits, PutRequestSchema, r);
      const out = await keyspace.put(r, deadline(ctx));
      return { ...out, header: header(id, out.header.revision) };
    }),
    deleteRange: etcdErrors(async (r, ctx) => {
      checkDelete(r);
      checkRequestSize(limits, DeleteRangeRequestSchema, r);
      const out = await keyspace.deleteRange(r, deadline(ctx));
      return { ...out, header: header(id, out.header.revision) };
    }),
    txn: etcdErrors(async (r, ctx) => {
      checkTxn(r, limits.maxTxnOps);
      checkRequestSize(limits, TxnRequestSchema, r);
      const out = await keyspace.txn(r, deadline(ctx));
      return { ...out, header: header(id, out.header.revision) };
    }),
    compact: etcdErrors(async (r) => {
      const out = await keyspace.compact(r);
      return { header: header(id, out.header.revision) };
    }),
  };
}

/** the request's deadline: ours, or the client's (grpc-timeout) when sooner */
function deadline(ctx: Pick<HandlerContext, "timeoutMs"> | undefined): Deadline {
  return requestDeadline(ctx?.timeoutMs());
}
