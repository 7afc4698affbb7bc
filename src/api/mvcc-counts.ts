// etcd's etcd_mvcc_{range,put,delete,txn}_total, counted as etcd's mvcc counts them: each
// Range, Put and DeleteRange a request carried out (in a Txn, the ops of the branch that
// ran, and each compare as the range it reads), and a Txn when it did more than one of
// them. Counted by the KV service's handlers as they answer (kv.ts), so gRPC and the JSON
// gateway count alike.
import type { TxnRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { TxnOut } from "../mvcc/responses.ts";
import type { MvccOps } from "../observe/metrics.ts";

export interface MvccCounter {
  mvccOps(ops: MvccOps): void;
}

/** what a Range, a Put and a DeleteRange count (read, never changed) */
export const ONE_RANGE: Readonly<MvccOps> = Object.freeze({ ranges: 1, puts: 0, deletes: 0 });
export const ONE_PUT: Readonly<MvccOps> = Object.freeze({ ranges: 0, puts: 1, deletes: 0 });
export const ONE_DELETE: Readonly<MvccOps> = Object.freeze({ ranges: 0, puts: 0, deletes: 1 });

/** what a Txn carried out counts: each compare, and the ops of the branch that ran */
export function txnCounts(r: TxnRequest, out: TxnOut): MvccOps {
  return txnOps(r, out, { ranges: 0, puts: 0, deletes: 0 });
}

function txnOps(r: TxnRequest, out: TxnOut, ops: MvccOps): MvccOps {
  ops.ranges += r.compare.length;
  const branch = out.succeeded ? r.success : r.failure;
  out.responses.forEach((resp, i) => {
    const done = resp.response;
    if (done.case === "responseRange") ops.ranges++;
    else if (done.case === "responsePut") ops.puts++;
    else if (done.case === "responseDeleteRange") ops.deletes++;
    else {
      const nested = branch[i]?.request;
      if (nested?.case === "requestTxn") txnOps(nested.value, done.value, ops);
    }
  });
  return ops;
}
