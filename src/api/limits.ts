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

/** the size each request decoded from the wire arrived in (only the message itself is its key) */
const wireSizes = new WeakMap<object, number>();

/** Notes that `msg` was decoded from `bytes` bytes. */
export function arrivedIn(msg: object, bytes: number): void {
  wireSizes.set(msg, bytes);
}

/**
 * Refuses a write whose encoded request exceeds max-request-bytes, as etcd does before
 * proposing it. A request that arrived within the limit is let through without encoding
 * it again (a copy of every value): decoded and encoded again, a Put, DeleteRange or Txn
 * is never longer than it came — fields at their default, repeated singular fields and
 * overlong varints drop out, unknown fields stay as they came, and these messages have no
 * packed fields (test/unit/limits.test.ts).
 */
export function checkRequestSize<D extends DescMessage>(limits: Limits, schema: D, msg: MessageShape<D>): void {
  const arrived = wireSizes.get(msg);
  if (arrived !== undefined && arrived <= limits.maxRequestBytes) return;
  if (toBinary(schema, msg).length > limits.maxRequestBytes) throw errors.requestTooLarge();
}
