// etcd errors (and malformed selectors) → gRPC status. Anything that is not an EtcdError is an internal fault:
// it is logged and answered with a message that names no internals.
import { Code, ConnectError } from "@connectrpc/connect";
import { EtcdError } from "../mvcc/errors.ts";
import { log } from "../util/log.ts";
import { SelectorError } from "../selectors/index.ts";

export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof EtcdError) return new ConnectError(err.message, Code[err.code]);
  // HariKube's selectors, which etcd does not have: the message names the selector and where it is wrong
  if (err instanceof SelectorError) return new ConnectError(`strata: ${err.message}`, Code.InvalidArgument);
  log("error", "internal error", { error: String((err as Error)?.stack ?? err) });
  return new ConnectError(`strata: internal error: ${(err as Error)?.message ?? String(err)}`, Code.Internal);
}

/** Wraps a handler so every error it throws leaves as etcd's gRPC status. */
export function etcdErrors<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A) => {
    try {
      return await fn(...args);
    } catch (err) {
      throw toConnectError(err);
    }
  };
}
