// Leases as etcd keeps them. Grants, deadlines and revocations live in the database, so
// several strata processes on one database agree on them: a keepalive reaching any
// process extends the lease for all, and an expired lease is revoked exactly once
// (the revocation re-checks the deadline under the revision lock).
import type { Backend } from "../backends/backend.ts";
import { log } from "../observe/log.ts";
import { errors } from "./errors.ts";
import { compareBytes } from "./keyrange.ts";
import type { Store } from "./store.ts";
import type { Rev } from "./types.ts";

/** etcd's upper bound on a lease TTL, in seconds */
const MAX_LEASE_TTL = 9_000_000_000n;
/** etcd's minimum TTL with its default election timeout (ceil(1.5 × 1 s)) */
export const MIN_LEASE_TTL = 2n;
/** how often expired leases are looked for, as etcd's lessor does */
const EXPIRY_CHECK_MS = 500;

/**
 * Where leases live. With several backends the primary holds the authoritative lease
 * (deadline, renewals); every other backend holds a copy so that a put there checks and
 * attaches the lease in its own transaction.
 */
export interface LeaseHome {
  primary: { store: Store; backend: Backend };
  others: Array<{ store: Store; backend: Backend }>;
}

/** how often copies of leases the primary no longer has are cleaned up */
const SWEEP_EVERY_CHECKS = 20;

export class LeaseKeeper {
  private timer: ReturnType<typeof setInterval> | undefined;
  private expiring = false;
  private checks = 0;
  /** leases granted and revoked (by a client or by expiry) by this process, for metrics */
  readonly counts = { granted: 0, revoked: 0 };

  constructor(
    private readonly home: LeaseHome,
    private readonly now: () => number = Date.now,
  ) {}

  private get store(): Store {
    return this.home.primary.store;
  }
  private get backend(): Backend {
    return this.home.primary.backend;
  }

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
    const lease = { id, ttl, expiresAt: this.now() + Number(ttl) * 1000 };
    const revision = await this.store.write(async (a) => {
      if (await a.tx.leaseExists(id)) throw errors.leaseExists();
      await a.tx.leaseInsert(lease);
      return a.beginRevision;
    });
    for (const o of this.home.others) {
      await o.store.write(async (a) => {
        // a copy left by an interrupted revoke is replaced
        if (await a.tx.leaseExists(id)) await a.tx.leaseDelete(id);
        await a.tx.leaseInsert(lease);
      });
    }
    this.counts.granted++;
    return { id, ttl, revision };
  }

  /** Deletes the lease and every key attached to it (one revision per backend holding some). */
  async revoke(id: Rev): Promise<Rev> {
    const revision = await this.store.write(async (a) => {
      if (!(await a.tx.leaseExists(id))) throw errors.leaseNotFound();
      await a.deleteKvs(await a.tx.leaseKeys(id));
      await a.tx.leaseDelete(id);
      return a.finish();
    });
    this.counts.revoked++;
    return this.dropCopies(id, revision);
  }

  /** Removes the copies of a lease the primary no longer has, with their keys. */
  private async dropCopies(id: Rev, revision: Rev): Promise<Rev> {
    let newest = revision;
    for (const o of this.home.others) {
      const r = await o.store.write(async (a) => {
        if (!(await a.tx.leaseExists(id))) return a.beginRevision;
        await a.deleteKvs(await a.tx.leaseKeys(id));
        await a.tx.leaseDelete(id);
        return a.finish();
      });
      if (r > newest) newest = r;
    }
    return newest;
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

  async keys(id: Rev): Promise<Uint8Array[]> {
    const all = await Promise.all([this.home.primary, ...this.home.others].map((h) => h.backend.leaseKeys(id)));
    return all.flat().sort(compareBytes);
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
        const gone = await this.store.write(async (a) => {
          if (!(await a.tx.leaseExpired(id, now))) return undefined; // renewed, or revoked elsewhere
          await a.deleteKvs(await a.tx.leaseKeys(id));
          await a.tx.leaseDelete(id);
          return a.finish();
        });
        if (gone === undefined) continue;
        this.counts.revoked++;
        await this.dropCopies(id, gone);
      }
      if (this.home.others.length > 0 && ++this.checks % SWEEP_EVERY_CHECKS === 0) await this.sweep();
    } catch (err) {
      // the backend may be back at the next check
      log("warn", "lease expiry failed", { error: String(err) });
    } finally {
      this.expiring = false;
    }
  }

  /** Copies whose lease the primary lost (a revoke interrupted half way) go, with their keys. */
  private async sweep(): Promise<void> {
    const live = new Set((await this.backend.leases()).map((l) => l.id));
    for (const o of this.home.others) {
      for (const l of await o.backend.leases()) {
        if (!live.has(l.id) && !(await this.backend.lease(l.id))) await this.dropCopies(l.id, 0n);
      }
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
