// The lease view on SQL: lease reads outside write batches, and renewals (a renewal
// changes no revision, so it is a plain transaction of its own, not a write batch).
import type { LeaseView } from "../../mvcc/backend.ts";
import type { LeaseRecord, Rev } from "../../mvcc/types.ts";
import { rowToLease } from "./rows.ts";
import type { SqlDb } from "./sql-db.ts";

export class SqlLeases implements LeaseView {
  constructor(private readonly db: SqlDb) {}

  async leaseKeys(id: Rev): Promise<Uint8Array[]> {
    const rows = await this.db.driver.read((c) => c.all("SELECT k FROM kv WHERE lease = ? ORDER BY k", [id]));
    return rows.map((r) => r.k as Uint8Array);
  }

  async leases(): Promise<LeaseRecord[]> {
    return (await this.db.driver.read((c) => c.all("SELECT id, ttl, expires_at FROM leases ORDER BY id"))).map(rowToLease);
  }

  async lease(id: Rev): Promise<LeaseRecord | undefined> {
    const [row] = await this.db.driver.read((c) => c.all("SELECT id, ttl, expires_at FROM leases WHERE id = ?", [id]));
    return row ? rowToLease(row) : undefined;
  }

  async renewLease(id: Rev, now: number): Promise<Rev> {
    return this.db.driver.write(async (c) => {
      const [l] = await c.all("SELECT ttl, expires_at FROM leases WHERE id = ?", [id]);
      // an expired lease is gone, even before its keys have been deleted
      if (!l || Number(l.expires_at) <= now) return 0n;
      const ttl = l.ttl as bigint;
      await c.run("UPDATE leases SET expires_at = ? WHERE id = ?", [BigInt(now) + ttl * 1000n, id]);
      return ttl;
    });
  }

  async expiredLeases(now: number): Promise<Rev[]> {
    const rows = await this.db.driver.read((c) => c.all("SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at", [BigInt(now)]));
    return rows.map((r) => r.id as bigint);
  }
}
