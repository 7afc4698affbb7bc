// etcd's request limits: --max-txn-ops and --max-request-bytes (1.5 MiB by default).
// gRPC itself refuses messages above max-request-bytes + 512 KiB, as etcd's server does.
import { type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { errors } from "../mvcc/errors.ts";

export interface Limits {
  maxTxnOps: number;
  maxRequestBytes: number;
}

/** gRPC overhead etcd allows above max-request-bytes before the transport refuses a message */
export const GRPC_OVERHEAD_BYTES = 512 * 1024;

/** Refuses a write whose encoded request exceeds max-request-bytes, as etcd does before proposing it. */
export function checkRequestSize<D extends DescMessage>(limits: Limits, schema: D, msg: MessageShape<D>): void {
  if (toBinary(schema, msg).length > limits.maxRequestBytes) throw errors.requestTooLarge();
}
