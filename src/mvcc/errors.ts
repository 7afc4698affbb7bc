// etcd's errors: the same gRPC code and message text that etcd sends, so clients
// (kube-apiserver matches on the message) react to them the same way.

/** gRPC status codes by name (an upstream etcd may answer with any of them) */
export type ErrorCode =
  | "Canceled"
  | "Unknown"
  | "InvalidArgument"
  | "DeadlineExceeded"
  | "NotFound"
  | "AlreadyExists"
  | "PermissionDenied"
  | "ResourceExhausted"
  | "FailedPrecondition"
  | "Aborted"
  | "OutOfRange"
  | "Unimplemented"
  | "Internal"
  | "Unavailable"
  | "DataLoss"
  | "Unauthenticated";

export class EtcdError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "EtcdError";
  }
}

const e = (code: ErrorCode, message: string) => () => new EtcdError(code, message);

export const errors = {
  emptyKey: e("InvalidArgument", "etcdserver: key is not provided"),
  keyNotFound: e("InvalidArgument", "etcdserver: key not found"),
  valueProvided: e("InvalidArgument", "etcdserver: value is provided"),
  leaseProvided: e("InvalidArgument", "etcdserver: lease is provided"),
  tooManyOps: e("InvalidArgument", "etcdserver: too many operations in txn request"),
  duplicateKey: e("InvalidArgument", "etcdserver: duplicate key given in txn request"),
  invalidSortOption: e("InvalidArgument", "etcdserver: invalid sort option"),
  requestTooLarge: e("InvalidArgument", "etcdserver: request is too large"),
  compacted: e("OutOfRange", "etcdserver: mvcc: required revision has been compacted"),
  futureRevision: e("OutOfRange", "etcdserver: mvcc: required revision is a future revision"),
  leaseNotFound: e("NotFound", "etcdserver: requested lease not found"),
  leaseExists: e("FailedPrecondition", "etcdserver: lease already exists"),
  leaseTTLTooLarge: e("OutOfRange", "etcdserver: too large lease TTL"),
  authNotEnabled: e("FailedPrecondition", "etcdserver: authentication is not enabled"),
  /** the NOSPACE alarm: a write over the quota, or a database out of disk */
  noSpace: e("ResourceExhausted", "etcdserver: mvcc: database space exceeded"),
};

/** A backend that cannot be reached: Unavailable, naming the backend. */
export function backendUnavailable(backend: string, cause: unknown): EtcdError {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new EtcdError("Unavailable", `strata: backend ${backend} unavailable: ${why}`);
}
