// Leases in the backend: granted and revoked inside write transactions (as the lease
// keeper does), keys attached by puts, renewals and expiry read outside them.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { BACKEND, client, covered, dec, failure, history, type Opened, openStore, showEvent } from "./harness.ts";
import type { Rev } from "../../src/mvcc/types.ts";

let db: Opened;
let c: ReturnType<typeof client>;

const grant = (id: Rev, ttl: Rev, expiresAt: number) =>
  db.store.write(async (a) => {
    await a.tx.leaseInsert({ id, ttl, expiresAt });
    return a.finish();
  });
/** what the lease keeper does: delete its keys at one revision, then the lease */
const revoke = (id: Rev) =>
  db.store.write(async (a) => {
    if (!(await a.tx.leaseExists(id))) throw new Error("no such lease");
    await a.deleteKvs(await a.tx.leaseKeys(id));
    await a.tx.leaseDelete(id);
    return a.finish();
  });
const keys = async (id: Rev) => (await db.backend.leaseKeys(id)).map(dec);

describe.skipIf(!covered)(`leases on ${BACKEND}`, () => {
  beforeAll(async () => {
    db = await openStore();
    c = client(db.store);
  });
  afterAll(() => db?.close());

  test("a granted lease is read back; granting takes no revision", async () => {
    const r0 = db.store.revision;
    const now = Date.now();
    expect(await grant(7n, 30n, now + 30_000)).toBe(r0);
    expect(await db.backend.lease(7n)).toEqual({ id: 7n, ttl: 30n, expiresAt: now + 30_000 });
    expect((await db.backend.leases()).map((l) => l.id)).toContain(7n);
    expect(await db.backend.lease(8n)).toBeUndefined();
    expect(await db.store.write((a) => a.tx.leaseExists(7n))).toBe(true);
    expect(await db.store.write((a) => a.tx.leaseExists(8n))).toBe(false);
  });

  test("puts attach keys; a put without the lease or a delete detaches them", async () => {
    await c.put("l/b", "1", 7n);
    await c.put("l/a", "1", 7n);
    await c.put("l/c", "1", 7n);
    await c.put("l/d", "1", 7n);
    expect(await keys(7n)).toEqual(["l/a", "l/b", "l/c", "l/d"]);
    expect((await c.get("l/a"))!.lease).toBe(7n);
    await c.put("l/c", "2"); // no lease now
    await c.del("l/d");
    expect(await keys(7n)).toEqual(["l/a", "l/b"]);
    expect((await db.store.write((a) => a.tx.leaseKeys(7n))).map((kv) => `${dec(kv.key)}=${dec(kv.value)}`)).toEqual(["l/a=1", "l/b=1"]);
    // a put naming a lease that does not exist is refused, writing nothing
    expect(await failure(() => c.put("l/e", "1", 99n))).toBe("etcdserver: requested lease not found");
    expect(await c.get("l/e")).toBeUndefined();
  });

  test("renewing extends a live lease; a gone one renews to 0", async () => {
    const now = Date.now();
    expect(await db.backend.renewLease(7n, now)).toBe(30n);
    expect((await db.backend.lease(7n))!.expiresAt).toBe(now + 30_000);
    expect(await db.backend.renewLease(99n, now)).toBe(0n);
  });

  test("expired leases are listed by their deadline", async () => {
    const now = Date.now();
    await grant(20n, 5n, now - 1000);
    await grant(21n, 5n, now + 60_000);
    const expired = await db.backend.expiredLeases(now);
    expect(expired).toContain(20n);
    expect(expired).not.toContain(21n);
    expect(expired).not.toContain(7n);
    expect(await db.store.write((a) => a.tx.leaseExpired(20n, now))).toBe(true);
    expect(await db.store.write((a) => a.tx.leaseExpired(21n, now))).toBe(false);
    expect(await db.backend.renewLease(20n, now)).toBe(0n);
  });

  test("revoking deletes the lease's keys at one revision, then the lease", async () => {
    const r0 = db.store.revision;
    expect(await revoke(7n)).toBe(r0 + 1n);
    expect((await history(db.backend, r0 + 1n, r0 + 1n)).map(showEvent)).toEqual([
      `DEL l/a@${r0 + 1n}<1@${(await db.backend.events(0n, r0, 1_000_000)).events.find((e) => dec(e.kv.key) === "l/a")!.kv.modRevision}`,
      `DEL l/b@${r0 + 1n}<1@${(await db.backend.events(0n, r0, 1_000_000)).events.find((e) => dec(e.kv.key) === "l/b")!.kv.modRevision}`,
    ]);
    expect(await c.list("l/", "l0")).toEqual([expect.stringMatching(/^l\/c=2@/)]);
    expect(await db.backend.lease(7n)).toBeUndefined();
    expect((await db.backend.leases()).map((l) => l.id)).not.toContain(7n);
    expect(await keys(7n)).toEqual([]);
    expect(await failure(() => c.put("l/a", "again", 7n))).toBe("etcdserver: requested lease not found");
    // a lease without keys revokes without a revision
    expect(await revoke(21n)).toBe(r0 + 1n);
  });

  test("leases survive reopening", async () => {
    await c.put("l/x", "1", 20n);
    db = await db.reopen();
    c = client(db.store);
    expect((await db.backend.lease(20n))?.ttl).toBe(5n);
    expect(await keys(20n)).toEqual(["l/x"]);
  });
});
