// etcdserverpb.KV: validation as etcd's gRPC layer does it, then the engine.
import type { ServiceImpl } from "@connectrpc/connect";
import {
  DeleteRangeRequestSchema,
  KV,
  PutRequestSchema,
  TxnRequestSchema,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { checkDelete, checkPut, checkRange, checkTxn } from "./checks.ts";
import type { Router } from "../router/router.ts";
import { etcdErrors } from "./errors.ts";
import { header, type ServerIdentity } from "./header.ts";
import { checkRequestSize, type Limits } from "./limits.ts";

export function kvService(store: Router, id: ServerIdentity, limits: Limits): ServiceImpl<typeof KV> {
  return {
    range: etcdErrors(async (r) => {
      checkRange(r);
      const out = await store.range(r);
      return { ...out, header: header(id, out.header.revision) };
    }),
    put: etcdErrors(async (r) => {
      checkPut(r);
      checkRequestSize(limits, PutRequestSchema, r);
      const out = await store.put(r);
      return { ...out, header: header(id, out.header.revision) };
    }),
    deleteRange: etcdErrors(async (r) => {
      checkDelete(r);
      checkRequestSize(limits, DeleteRangeRequestSchema, r);
      const out = await store.deleteRange(r);
      return { ...out, header: header(id, out.header.revision) };
    }),
    txn: etcdErrors(async (r) => {
      checkTxn(r, limits.maxTxnOps);
      checkRequestSize(limits, TxnRequestSchema, r);
      const out = await store.txn(r);
      return { ...out, header: header(id, out.header.revision) };
    }),
    compact: etcdErrors(async (r) => {
      const out = await store.compact(r);
      return { header: header(id, out.header.revision) };
    }),
  };
}
