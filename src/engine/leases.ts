// Leases as etcd keeps them: grants and revocations are stored; deadlines live in
// memory and, as in etcd, every lease gets its full TTL again when the server starts,
// so a client whose keepalives could not reach a stopped server keeps its keys.
import type { Backend } from "../backends/backend.ts";
import { errors } from "./errors.ts";
import type { Store } from "./store.ts";
import type { LeaseRecord, Rev } from "./types.ts";

/** etcd's upper bound on a lease TTL, in seconds */
const MAX_LEASE_TTL = 9_000_000_000n;
/** etcd's minimum TTL with its default election timeout (ceil(1.5 × 1 s)) */
export const MIN_LEASE_TTL = 2n;
/** how often expired leases are looked for, as etcd's lessor does */
const EXPIRY_CHECK_MS = 500;

interface Held {
  ttl: Rev;
  expiresAt: number;
  revoking: boolean;
}

export class LeaseKeeper {
  private readonly leases = new Map<Rev, Held>();
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly store: Store,
    private readonly backend: Backend,
    private readonly now: () => number = Date.now,
  ) {}

  start(records: LeaseRecord[]): void {
    const now = this.now();
    for (const r of records) this.leases.set(r.id, { ttl: r.ttl, expiresAt: now + Number(r.ttl) * 1000, revoking: false });
    this.timer = setInterval(() => this.expire(), EXPIRY_CHECK_MS);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  get count(): number {
    return this.leases.size;
  }

  async grant(requestedTtl: Rev, requestedId: Rev): Promise<{ id: Rev; ttl: Rev; revision: Rev }> {
    if (requestedTtl > MAX_LEASE_TTL) throw errors.leaseTTLTooLarge();
    const ttl = requestedTtl < MIN_LEASE_TTL ? MIN_LEASE_TTL : requestedTtl;
    const id = requestedId !== 0n ? requestedId : this.newId();
    const revision = await this.store.write(async (a) => {
      if (this.leases.has(id) || (await a.tx.leaseExists(id))) throw errors.leaseExists();
      await a.tx.leaseInsert({ id, ttl });
      return a.beginRevision;
    });
    this.leases.set(id, { ttl, expiresAt: this.now() + Number(ttl) * 1000, revoking: false });
    return { id, ttl, revision };
  }

  /** Deletes the lease and every key attached to it, in one revision. */
  async revoke(id: Rev): Promise<Rev> {
    const revision = await this.store.write(async (a) => {
      if (!(await a.tx.leaseExists(id))) throw errors.leaseNotFound();
      await a.deleteKvs(await a.tx.leaseKeys(id));
      await a.tx.leaseDelete(id);
      return a.finish();
    });
    this.leases.delete(id);
    return revision;
  }

  /** Renews a lease to its full TTL; returns the TTL, or 0 for a lease that is gone. */
  renew(id: Rev): Rev {
    const l = this.leases.get(id);
    if (!l || l.expiresAt <= this.now()) return 0n;
    l.expiresAt = this.now() + Number(l.ttl) * 1000;
    return l.ttl;
  }

  /** remaining seconds (truncated, as etcd reports them) and granted TTL; undefined when not found */
  timeToLive(id: Rev): { ttl: Rev; grantedTtl: Rev } | undefined {
    const l = this.leases.get(id);
    if (!l) return undefined;
    const remaining = Math.max(0, Math.trunc((l.expiresAt - this.now()) / 1000));
    return { ttl: BigInt(remaining), grantedTtl: l.ttl };
  }

  keys(id: Rev): Promise<Uint8Array[]> {
    return this.backend.leaseKeys(id);
  }

  ids(): Rev[] {
    return [...this.leases.keys()];
  }

  private expire(): void {
    const now = this.now();
    for (const [id, l] of this.leases) {
      if (l.revoking || l.expiresAt > now) continue;
      l.revoking = true;
      this.revoke(id).catch((err) => {
        if ((err as Error).message === errors.leaseNotFound().message) {
          this.leases.delete(id);
          return;
        }
        l.revoking = false; // the backend may be back at the next check
        console.error(JSON.stringify({ level: "warn", msg: "lease expiry failed", lease: String(id), error: String(err) }));
      });
    }
  }

  private newId(): Rev {
    for (;;) {
      const b = new BigUint64Array(1);
      crypto.getRandomValues(b);
      const id = b[0]! & 0x7fffffffffffffffn;
      if (id !== 0n && !this.leases.has(id)) return id;
    }
  }
}
