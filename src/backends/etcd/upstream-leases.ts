// Leases when the default backend is an upstream etcd: etcd keeps them (grants, TTLs,
// keepalives, expiry), and each database backend holds a copy of every lease so a key
// stored there can be attached to it in the database's own transaction. A revoke through
// strata removes the copies with their keys at once; a lease etcd lost otherwise (expired,
// or revoked by someone else) is found by a periodic sweep. With no database backend this
// is a plain relay to etcd.
import type { LeaseCopies, LeaseKeeper, LeaseService } from "../../keyspace/contract.ts";
import { EtcdError } from "../../mvcc/errors.ts";
import { compareBytes } from "../../mvcc/keyrange.ts";
import type { Rev } from "../../mvcc/types.ts";
import { log } from "../../util/log.ts";

/** how often copies are compared with the leases etcd still has */
const SWEEP_MS = 1000;

export class UpstreamLeases implements LeaseKeeper {
  private timer: ReturnType<typeof setInterval> | undefined;
  private sweeping = false;
  readonly counts = { granted: 0, revoked: 0 };

  constructor(
    private readonly upstream: LeaseService,
    /** the databases' copies; none without database backends */
    private readonly copies: LeaseCopies | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    if (!this.copies) return;
    this.timer = setInterval(() => void this.sweep(), SWEEP_MS);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async grant(requestedTtl: Rev, requestedId: Rev): Promise<{ id: Rev; ttl: Rev; revision: Rev }> {
    const g = await this.upstream.grant(requestedTtl, requestedId);
    try {
      await this.copies?.put({ id: g.id, ttl: g.ttl, expiresAt: this.now() + Number(g.ttl) * 1000 });
    } catch (err) {
      // a lease that keys in a database could not be attached to is not granted
      await this.upstream.revoke(g.id).catch(() => undefined);
      throw err;
    }
    this.counts.granted++;
    return g;
  }

  async revoke(id: Rev): Promise<Rev> {
    let revision: Rev;
    try {
      revision = await this.upstream.revoke(id);
    } catch (err) {
      // etcd lost it already: its copies go too
      if (err instanceof EtcdError && err.code === "NotFound") await this.dropCopies(id);
      throw err;
    }
    await this.dropCopies(id);
    this.counts.revoked++;
    return revision;
  }

  renew(id: Rev): Promise<{ ttl: Rev; revision: Rev }> {
    return this.upstream.renew(id);
  }

  async timeToLive(id: Rev, keys: boolean): Promise<{ ttl: Rev; grantedTtl: Rev; keys: Uint8Array[]; revision: Rev }> {
    const t = await this.upstream.timeToLive(id, keys);
    if (!keys || t.ttl < 0n || !this.copies) return t;
    const copied = await this.copies.keys(id);
    return { ...t, keys: [...t.keys, ...copied].sort(compareBytes) };
  }

  list(): Promise<{ ids: Rev[]; revision: Rev }> {
    return this.upstream.list();
  }

  private async dropCopies(id: Rev): Promise<void> {
    await this.copies?.drop(id);
  }

  /** Copies of leases etcd no longer has go, with their keys. */
  async sweep(): Promise<void> {
    if (this.sweeping || !this.copies) return;
    this.sweeping = true;
    try {
      const live = new Set((await this.upstream.list()).ids);
      const copied = new Set(await this.copies.ids());
      for (const id of copied) {
        // a copy made after the list was read belongs to a lease granted since: ask again
        if (!live.has(id) && (await this.upstream.timeToLive(id, false)).ttl < 0n) await this.dropCopies(id);
      }
    } catch (err) {
      log("warn", "comparing lease copies with the upstream etcd failed", { error: String(err) });
    } finally {
      this.sweeping = false;
    }
  }
}
