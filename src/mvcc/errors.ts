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
  // etcd's auth store (src/api/auth-store.ts), in etcd's words and codes
  authNotEnabled: e("FailedPrecondition", "etcdserver: authentication is not enabled"),
  /** a request shed before any work was done: too many wait on the database already */
  tooManyRequests: e("ResourceExhausted", "etcdserver: too many requests"),
  rootUserNotExist: e("FailedPrecondition", "etcdserver: root user does not exist"),
  rootRoleNotExist: e("FailedPrecondition", "etcdserver: root user does not have root role"),
  userAlreadyExist: e("FailedPrecondition", "etcdserver: user name already exists"),
  userEmpty: e("InvalidArgument", "etcdserver: user name is empty"),
  userNotFound: e("FailedPrecondition", "etcdserver: user name not found"),
  roleAlreadyExist: e("FailedPrecondition", "etcdserver: role name already exists"),
  roleNotFound: e("FailedPrecondition", "etcdserver: role name not found"),
  roleEmpty: e("InvalidArgument", "etcdserver: role name is empty"),
  authFailed: e("InvalidArgument", "etcdserver: authentication failed, invalid user ID or password"),
  permissionDenied: e("PermissionDenied", "etcdserver: permission denied"),
  roleNotGranted: e("FailedPrecondition", "etcdserver: role is not granted to the user"),
  permissionNotGranted: e("FailedPrecondition", "etcdserver: permission is not granted to the role"),
  invalidAuthToken: e("Unauthenticated", "etcdserver: invalid auth token"),
  invalidAuthMgmt: e("InvalidArgument", "etcdserver: invalid auth management"),
  authOldRevision: e("InvalidArgument", "etcdserver: revision of auth store is old"),
  /** etcd has no gRPC error for it: its gRPC layer answers Unknown with the auth store's own words */
  noPasswordUser: e("Unknown", "auth: authentication failed, password was given for no password user"),
  /** the NOSPACE alarm: a write over the quota, or a database out of disk */
  noSpace: e("ResourceExhausted", "etcdserver: mvcc: database space exceeded"),
};

/** A backend that cannot be reached: Unavailable, naming the backend. */
export function backendUnavailable(backend: string, cause: unknown): EtcdError {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new EtcdError("Unavailable", `strata: backend ${backend} unavailable: ${why}`);
}

/**
 * A request the database did not answer in time. A write still queued was never applied;
 * one whose batch was committing may have been (as etcd's "request timed out", the client
 * must not take it for a failure).
 */
export function backendTimedOut(backend: string, withinMs: number, write?: "not applied" | "may have been applied"): EtcdError {
  const what = write ? `; the write ${write}` : "";
  return new EtcdError("Unavailable", `strata: backend ${backend} unavailable: request timed out, no answer within ${withinMs} ms${what}`);
}

/** The client's deadline passed: it no longer waits for the answer. */
export const deadlineExceeded = (): EtcdError => new EtcdError("DeadlineExceeded", "context deadline exceeded");

/** The database failed while a write was committing and whether it committed cannot be read back. */
export function outcomeUnknown(backend: string, cause: unknown): EtcdError {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new EtcdError("Unavailable", `strata: backend ${backend} unavailable: request timed out, the write may have been applied (${why})`);
}

/** Whether the database answered with this error (an etcd refusal), rather than failed to answer. */
export function isRefusal(err: unknown): boolean {
  return err instanceof EtcdError && err.code !== "Unavailable";
}
