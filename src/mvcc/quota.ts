// etcd's storage quota (--quota-backend-bytes): a request that adds data is charged an
// estimate of what it stores, and is refused (raising NOSPACE) when the database's size
// plus that charge would reach the quota. Requests that add nothing (ranges, deletes,
// compaction, read-only txns) are never refused. The charges are etcd's own.
import type { PutRequest, TxnRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { AdminView, DbSize } from "./backend.ts";
import type { Rev } from "./types.ts";

/** etcd's estimate of what a key's metadata costs to store */
const KV_OVERHEAD = 256;
/** etcd's estimate of what a lease costs to store */
export const LEASE_OVERHEAD = 64;
/** etcd's default quota (2 GiB), strata's for an embedded SQLite database */
const DEFAULT_QUOTA_BYTES = 2n * 1024n * 1024n * 1024n;

/**
 * The storage quota of a database: --quota-backend-bytes as etcd reads it (0: the default,
 * below 0: none). The default is etcd's 2 GiB for a database in strata's own files
 * (SQLite); a database server manages its own space, so it has none unless one is set.
 */
export function quotaBytesFor(backend: AdminView, setting: bigint): bigint | undefined {
  if (setting < 0n) return undefined;
  if (setting > 0n) return setting;
  return backend.embedded ? DEFAULT_QUOTA_BYTES : undefined;
}

export function costOfPut(p: PutRequest): number {
  return KV_OVERHEAD + p.key.length + p.value.length;
}

/**
 * The larger of the two branches' puts. As in etcd only the txn's own puts count (not
 * those of nested txns), so a txn without puts passes even while NOSPACE is raised.
 */
export function costOfTxn(t: TxnRequest): number {
  const branch = (ops: TxnRequest["success"]) =>
    ops.reduce((n, op) => n + (op.request.case === "requestPut" ? costOfPut(op.request.value) : 0), 0);
  return Math.max(branch(t.success), branch(t.failure));
}

/** How often the database is asked its size while writes come in: in between, what was charged is added. */
const SIZE_FRESH_MS = 250;

/**
 * One database's quota. Asking a database its size costs a query (a round trip on a
 * server), so the size is measured at most every SIZE_FRESH_MS and the charges admitted
 * since are added to it; a charge that would reach the quota is checked against a fresh
 * measure before it is refused.
 */
export class SpaceQuota {
  private measured: { size: Rev; at: number } | undefined;
  private measuring: Promise<Rev> | undefined;
  private charged = 0n;

  constructor(
    /** bytes the database may occupy */
    readonly bytes: Rev,
    private readonly size: () => Promise<DbSize>,
  ) {}

  /** Whether a charge fits: size + cost < quota, as etcd's test. */
  async fits(cost: number): Promise<boolean> {
    const c = BigInt(cost);
    const fresh = this.measured !== undefined && Date.now() - this.measured.at < SIZE_FRESH_MS;
    let size = fresh ? this.measured!.size + this.charged : await this.measure();
    if (size + c >= this.bytes && fresh) size = await this.measure();
    if (size + c >= this.bytes) return false;
    this.charged += c;
    return true;
  }

  /** the size last measured (undefined before the first) */
  get lastSize(): Rev | undefined {
    return this.measured?.size;
  }

  private measure(): Promise<Rev> {
    // concurrent checks share one query
    return (this.measuring ??= this.size().then(
      (s) => {
        this.measured = { size: s.size, at: Date.now() };
        this.charged = 0n;
        this.measuring = undefined;
        return s.size;
      },
      (err) => {
        this.measuring = undefined;
        throw err;
      },
    ));
  }
}
