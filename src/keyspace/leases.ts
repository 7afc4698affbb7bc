// Leases as etcd keeps them. Grants, deadlines and revocations live in the database, so
// several strata processes on one database agree on them: a keepalive reaching any
// process extends the lease for all, and an expired lease is revoked exactly once
// (the revocation re-checks the deadline under the revision lock).
import type { LeaseView } from "../mvcc/backend.ts";
import { log } from "../util/log.ts";
import { EtcdError, errors } from "../mvcc/errors.ts";
import { compareBytes } from "../mvcc/keyrange.ts";
import type { Store } from "../mvcc/store.ts";
import { type Deadline, requestDeadline } from "../mvcc/deadline.ts";
import type { LeaseRecord, Rev } from "../mvcc/types.ts";
import type { LeaseCopies, LeaseKeeper, LeaseService } from "./contract.ts";

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
  primary: { store: Store; backend: LeaseView };
  others: Array<{ store: Store; backend: LeaseView }>;
}

/** how often copies of leases the primary no longer has are cleaned up */
const SWEEP_EVERY_CHECKS = 20;

/**
 * Leases kept in the default database backend. Copies go to the other databases, and
 * each upstream etcd gets a lease of the same ID and TTL (granted, kept alive and revoked
 * with it) so keys stored there can be attached to it.
 */
export class DatabaseLeases implements LeaseKeeper {
  private timer: ReturnType<typeof setInterval> | undefined;
  private expiring = false;
  private checks = 0;
  /** leases granted and revoked (by a client or by expiry) by this process, for metrics */
  readonly counts = { granted: 0, revoked: 0 };

  constructor(
    private readonly home: LeaseHome,
    /** the revision headers report */
    private readonly revision: () => Rev,
    private readonly upstreams: LeaseService[] = [],
    private readonly now: () => number = Date.now,
  ) {}

  private get store(): Store {
    return this.home.primary.store;
  }
  private get backend(): LeaseView {
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
    // answered by then while a database is silent, as a put is
    const deadline = requestDeadline();
    const revision = await this.store.write(async (a) => {
      if (await a.tx.leaseExists(id)) throw errors.leaseExists();
      await a.tx.leaseInsert(lease);
      return a.beginRevision;
    }, [], deadline);
    for (const o of this.home.others) await putCopy(o.store, lease, deadline);
    for (const u of this.upstreams) {
      try {
        await u.grant(ttl, id);
      } catch (err) {
        // a lease left by an interrupted revoke is replaced
        if (!(err instanceof EtcdError && err.code === "FailedPrecondition")) throw err;
        await u.revoke(id).catch(ignoreNotFound);
        await u.grant(ttl, id);
      }
    }
    this.counts.granted++;
    return { id, ttl, revision };
  }

  /** Deletes the lease and every key attached to it (one revision per backend holding some). */
  async revoke(id: Rev): Promise<Rev> {
    const deadline = requestDeadline();
    const revision = await this.store.write(async (a) => {
      if (!(await a.tx.leaseExists(id))) throw errors.leaseNotFound();
      await a.deleteKvs(await a.tx.leaseKeys(id));
      await a.tx.leaseDelete(id);
      return a.finish();
    }, [], deadline);
    this.counts.revoked++;
    return this.dropCopies(id, revision, deadline);
  }

  /** Removes the copies of a lease the primary no longer has, with their keys (the upstreams' too). */
  private async dropCopies(id: Rev, revision: Rev, deadline?: Deadline): Promise<Rev> {
    let newest = revision;
    for (const o of this.home.others) {
      const r = await dropCopy(o.store, id, deadline);
      if (r > newest) newest = r;
    }
    for (const u of this.upstreams) await u.revoke(id).catch(ignoreNotFound);
    return newest;
  }

  /** Renews a lease to its full TTL (and its upstream copies); TTL 0 for a lease that is gone. */
  async renew(id: Rev): Promise<{ ttl: Rev; revision: Rev }> {
    const ttl = await this.home.primary.store.backendCall((b) => b.renewLease(id, this.now()));
    if (ttl > 0n) {
      for (const u of this.upstreams) {
        await u.renew(id).catch((err) => log("warn", "keeping a lease alive in an upstream etcd failed", { lease: String(id), error: String(err) }));
      }
    }
    return { ttl, revision: this.revision() };
  }

  /** remaining seconds (truncated, as etcd reports them), granted TTL and the keys in every backend */
  async timeToLive(id: Rev, keys: boolean): Promise<{ ttl: Rev; grantedTtl: Rev; keys: Uint8Array[]; revision: Rev }> {
    const revision = this.revision();
    const l = await this.home.primary.store.backendCall((b) => b.lease(id));
    if (!l) return { ttl: -1n, grantedTtl: 0n, keys: [], revision };
    const remaining = Math.max(0, Math.trunc((l.expiresAt - this.now()) / 1000));
    return { ttl: BigInt(remaining), grantedTtl: l.ttl, keys: keys ? await this.keys(id) : [], revision };
  }

  private async keys(id: Rev): Promise<Uint8Array[]> {
    const all = await Promise.all([
      ...[this.home.primary, ...this.home.others].map((h) => h.store.backendCall((b) => b.leaseKeys(id))),
      ...this.upstreams.map(async (u) => (await u.timeToLive(id, true)).keys),
    ]);
    return all.flat().sort(compareBytes);
  }

  async list(): Promise<{ ids: Rev[]; revision: Rev }> {
    return { ids: (await this.home.primary.store.backendCall((b) => b.leases())).map((l) => l.id), revision: this.revision() };
  }

  /** Revokes every lease past its deadline; a renewal that got in first wins. */
  async expire(): Promise<void> {
    if (this.expiring) return;
    this.expiring = true;
    try {
      const now = this.now();
      // all at once, so the revocations share group commits (one after another, a thousand
      // leases expiring together took a thousand commits); each still gets its own revision
      const revoked = await Promise.allSettled((await this.backend.expiredLeases(now)).map(async (id) => {
        const gone = await this.store.write(async (a) => {
          if (!(await a.tx.leaseExpired(id, now))) return undefined; // renewed, or revoked elsewhere
          await a.deleteKvs(await a.tx.leaseKeys(id));
          await a.tx.leaseDelete(id);
          return a.finish();
        });
        if (gone === undefined) return;
        this.counts.revoked++;
        await this.dropCopies(id, gone);
      }));
      const failed = revoked.find((r) => r.status === "rejected");
      if (failed) throw failed.reason;
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

/** Puts a copy of a lease into a store, replacing one an interrupted revoke left there. */
function putCopy(store: Store, lease: LeaseRecord, deadline?: Deadline): Promise<void> {
  return store.write(async (a) => {
    if (await a.tx.leaseExists(lease.id)) await a.tx.leaseDelete(lease.id);
    await a.tx.leaseInsert(lease);
  }, [], deadline);
}

/** Removes a lease's copy from a store with the keys attached to it; resolves to the store's revision after. */
function dropCopy(store: Store, id: Rev, deadline?: Deadline): Promise<Rev> {
  return store.write(async (a) => {
    if (!(await a.tx.leaseExists(id))) return a.beginRevision;
    await a.deleteKvs(await a.tx.leaseKeys(id));
    await a.tx.leaseDelete(id);
    return a.finish();
  }, [], deadline);
}

/** The copies of leases an upstream etcd keeps, in every database backend (each a store on one). */
export class DatabaseLeaseCopies implements LeaseCopies {
  constructor(private readonly parts: Array<{ store: Store; backend: LeaseView }>) {}

  async put(lease: LeaseRecord): Promise<void> {
    for (const p of this.parts) await putCopy(p.store, lease);
  }

  async drop(id: Rev): Promise<void> {
    for (const p of this.parts) await dropCopy(p.store, id);
  }

  async keys(id: Rev): Promise<Uint8Array[]> {
    return (await Promise.all(this.parts.map((p) => p.store.backendCall((b) => b.leaseKeys(id))))).flat();
  }

  async ids(): Promise<Rev[]> {
    return (await Promise.all(this.parts.map((p) => p.store.backendCall((b) => b.leases())))).flat().map((l) => l.id);
  }
}

/** A lease already gone from an upstream is what a revoke wanted. */
export function ignoreNotFound(err: unknown): void {
  if (!(err instanceof EtcdError && err.code === "NotFound")) throw err;
}

function newId(): Rev {
  for (;;) {
    const b = new BigUint64Array(1);
    crypto.getRandomValues(b);
    const id = b[0]! & 0x7fffffffffffffffn;
    if (id !== 0n) return id;
  }
}
