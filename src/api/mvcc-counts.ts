// etcd's etcd_mvcc_{range,put,delete,txn}_total, counted as etcd's mvcc counts them: each
// Range, Put and DeleteRange a request carried out (in a Txn, the ops of the branch that
// ran, and each compare as the range it reads), and a Txn when it did more than one of
// them. Counted on the KV service's answers, so gRPC and the JSON gateway count alike.
import type { ServiceImpl } from "@connectrpc/connect";
import type { KV, TxnRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { TxnOut } from "../mvcc/responses.ts";
import type { MvccOps } from "../observe/metrics.ts";

export interface MvccCounter {
  mvccOps(ops: MvccOps): void;
}

type Kv = Pick<ServiceImpl<typeof KV>, "range" | "put" | "deleteRange" | "txn">;

/** `kv` with every answered Range, Put, DeleteRange and Txn counted. */
export function countedKv<T extends Kv>(kv: T, counter: MvccCounter): T {
  return {
    ...kv,
    range: counted(kv.range, counter, () => ({ ranges: 1, puts: 0, deletes: 0 })),
    put: counted(kv.put, counter, () => ({ ranges: 0, puts: 1, deletes: 0 })),
    deleteRange: counted(kv.deleteRange, counter, () => ({ ranges: 0, puts: 0, deletes: 1 })),
    txn: counted(kv.txn, counter, (r: TxnRequest, out) => txnOps(r, out as unknown as TxnOut, { ranges: 0, puts: 0, deletes: 0 })),
  };
}

/** `fn` with each answer it gives counted as `ops` of it says. */
export function counted<R, O, C extends unknown[]>(
  fn: (r: R, ...rest: C) => O | Promise<O>,
  counter: MvccCounter,
  ops: (r: R, out: O) => MvccOps,
): (r: R, ...rest: C) => Promise<O> {
  return async (r, ...rest) => {
    const out = await fn(r, ...rest);
    counter.mvccOps(ops(r, out));
    return out;
  };
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
