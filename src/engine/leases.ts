// Leases as etcd keeps them. Grants, deadlines and revocations live in the database, so
// several strata processes on one database agree on them: a keepalive reaching any
// process extends the lease for all, and an expired lease is revoked exactly once
// (the revocation re-checks the deadline under the revision lock).
import type { Backend } from "../backends/backend.ts";
import { errors } from "./errors.ts";
import type { Store } from "./store.ts";
import type { Rev } from "./types.ts";

/** etcd's upper bound on a lease TTL, in seconds */
const MAX_LEASE_TTL = 9_000_000_000n;
/** etcd's minimum TTL with its default election timeout (ceil(1.5 × 1 s)) */
export const MIN_LEASE_TTL = 2n;
/** how often expired leases are looked for, as etcd's lessor does */
const EXPIRY_CHECK_MS = 500;

export class LeaseKeeper {
  private timer: ReturnType<typeof setInterval> | undefined;
  private expiring = false;

  constructor(
    private readonly store: Store,
    private readonly backend: Backend,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.expire(), EXPIRY_CHECK_MS);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async grant(requestedTtl: Rev, requestedId: Rev): Promise<{ id: Rev; ttl: Rev; revision: Rev }> {
    if (requestedTtl > MAX_LEASE_TTL) throw errors.leaseTTLTooLarge();
    const ttl = requestedTtl < MIN_LEASE_TTL ? MIN_LEASE_TTL : requestedTtl;
    const id = requestedId !== 0n ? requestedId : newId();
    const revision = await this.store.write(async (a) => {
      if (await a.tx.leaseExists(id)) throw errors.leaseExists();
      await a.tx.leaseInsert({ id, ttl, expiresAt: this.now() + Number(ttl) * 1000 });
      return a.beginRevision;
    });
    return { id, ttl, revision };
  }

  /** Deletes the lease and every key attached to it, in one revision. */
  revoke(id: Rev): Promise<Rev> {
    return this.store.write(async (a) => {
      if (!(await a.tx.leaseExists(id))) throw errors.leaseNotFound();
      await a.deleteKvs(await a.tx.leaseKeys(id));
      await a.tx.leaseDelete(id);
      return a.finish();
    });
  }

  /** Renews a lease to its full TTL; returns the TTL, or 0 for a lease that is gone. */
  renew(id: Rev): Promise<Rev> {
    return this.backend.renewLease(id, this.now());
  }

  /** remaining seconds (truncated, as etcd reports them) and granted TTL; undefined when not found */
  async timeToLive(id: Rev): Promise<{ ttl: Rev; grantedTtl: Rev } | undefined> {
    const l = await this.backend.lease(id);
    if (!l) return undefined;
    const remaining = Math.max(0, Math.trunc((l.expiresAt - this.now()) / 1000));
    return { ttl: BigInt(remaining), grantedTtl: l.ttl };
  }

  keys(id: Rev): Promise<Uint8Array[]> {
    return this.backend.leaseKeys(id);
  }

  async ids(): Promise<Rev[]> {
    return (await this.backend.leases()).map((l) => l.id);
  }

  /** Revokes every lease past its deadline; a renewal that got in first wins. */
  async expire(): Promise<void> {
    if (this.expiring) return;
    this.expiring = true;
    try {
      const now = this.now();
      for (const id of await this.backend.expiredLeases(now)) {
        await this.store.write(async (a) => {
          if (!(await a.tx.leaseExpired(id, now))) return; // renewed, or revoked elsewhere
          await a.deleteKvs(await a.tx.leaseKeys(id));
          await a.tx.leaseDelete(id);
          await a.finish();
        });
      }
    } catch (err) {
      // the backend may be back at the next check
      console.error(JSON.stringify({ level: "warn", msg: "lease expiry failed", error: String(err) }));
    } finally {
      this.expiring = false;
    }
  }
}

function newId(): Rev {
  for (;;) {
    const b = new BigUint64Array(1);
    crypto.getRandomValues(b);
    const id = b[0]! & 0x7fffffffffffffffn;
    if (id !== 0n) return id;
  }
}
