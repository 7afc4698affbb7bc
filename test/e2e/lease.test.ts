// Differential: Lease — grant, requested IDs, revoke with its DELETE events, keepalive,
// time-to-live, listing, expiry, and what a missing lease gets.
import { describe, test } from "bun:test";
import type { Etcd3 } from "etcd3";
import { attempt, b, differential, prefixEnd, sleep, useServers } from "../support/differential.ts";

const sides = useServers();
const grant = (c: Etcd3, TTL: number, ID = "0") => attempt(c.leaseClient.leaseGrant({ TTL, ID } as never));

/** one keepalive round trip on a stream of the client's */
async function keepAliveOnce(c: Etcd3, id: string): Promise<unknown> {
  const stream = await c.leaseClient.leaseKeepAlive();
  const answer = new Promise((resolve) => (stream as unknown as NodeJS.EventEmitter).once("data", resolve));
  stream.write({ ID: id });
  const res = await answer;
  stream.end();
  return res;
}

describe("Lease", () => {
  test("grant with a TTL, below the minimum, with a requested ID; a duplicate ID is refused", () =>
    differential(sides(), async (c) => [
      await grant(c, 60),
      await grant(c, 1),
      await grant(c, 0),
      await grant(c, 30, "4242"),
      await grant(c, 30, "4242"),
      await grant(c, 9_000_000_001),
    ]));

  test("keys attached to a lease; time-to-live with keys; the lease list", () =>
    differential(sides(), async (c) => {
      const l = (await c.leaseClient.leaseGrant({ TTL: 100, ID: "777" } as never)).ID;
      await c.kv.put({ key: b("l2/b"), value: b("1"), lease: l } as never);
      await c.kv.put({ key: b("l2/a"), value: b("2"), lease: l } as never);
      const ttl = (await c.leaseClient.leaseTimeToLive({ ID: l, keys: true } as never)) as { keys: Buffer[] };
      ttl.keys.sort(Buffer.compare); // etcd lists them in no particular order
      const leases = (await c.leaseClient.leaseLeases({} as never)) as { leases: { ID: string }[] };
      return [ttl, leases.leases.filter((x) => x.ID === l).length, await attempt(c.leaseClient.leaseTimeToLive({ ID: l } as never))];
    }));

  test("revoke deletes the attached keys in one revision, with DELETE events", () =>
    differential(sides(), async (c) => {
      const l = (await c.leaseClient.leaseGrant({ TTL: 100 } as never)).ID;
      await c.kv.put({ key: b("l3/a"), value: b("1"), lease: l } as never);
      await c.kv.put({ key: b("l3/b"), value: b("2"), lease: l } as never);
      await c.kv.put({ key: b("l3/c"), value: b("3") } as never);
      const events: unknown[] = [];
      const watcher = await c.watch().prefix("l3/").withPreviousKV().create();
      watcher.on("delete", (kv, prev) => events.push([kv, prev]));
      const revoked = await attempt(c.leaseClient.leaseRevoke({ ID: l } as never));
      const deadline = Date.now() + 5000;
      while (events.length < 2 && Date.now() < deadline) await sleep(10);
      await watcher.cancel();
      return [revoked, events, await attempt(c.kv.range({ key: b("l3/"), range_end: prefixEnd("l3/") } as never)),
        await attempt(c.leaseClient.leaseRevoke({ ID: l } as never))];
    }));

  test("a lease that is not there: revoke, keepalive, time-to-live, put", () =>
    differential(sides(), async (c) => [
      await attempt(c.leaseClient.leaseRevoke({ ID: "31337" } as never)),
      await attempt(keepAliveOnce(c, "31337")),
      await attempt(c.leaseClient.leaseTimeToLive({ ID: "31337", keys: true } as never)),
      await attempt(c.kv.put({ key: b("l4/a"), value: b("1"), lease: "31337" } as never)),
    ]));

  test("keepalive renews to the full TTL", () =>
    differential(sides(), async (c) => {
      const l = (await c.leaseClient.leaseGrant({ TTL: 30 } as never)).ID;
      await sleep(1100);
      const before = await c.leaseClient.leaseTimeToLive({ ID: l } as never);
      const renewed = await keepAliveOnce(c, l);
      const after = await c.leaseClient.leaseTimeToLive({ ID: l } as never);
      return [before, renewed, after];
    }), 15_000);

  test("an expired lease deletes its keys", () =>
    differential(sides(), async (c) => {
      const l = (await c.leaseClient.leaseGrant({ TTL: 2 } as never)).ID;
      await c.kv.put({ key: b("l6/a"), value: b("1"), lease: l } as never);
      const deleted: unknown[] = [];
      const watcher = await c.watch().prefix("l6/").create();
      watcher.on("delete", (kv) => deleted.push(kv));
      const deadline = Date.now() + 8000;
      while (deleted.length < 1 && Date.now() < deadline) await sleep(50);
      await watcher.cancel();
      return [deleted, await attempt(c.kv.range({ key: b("l6/a") } as never)),
        await attempt(c.leaseClient.leaseTimeToLive({ ID: l } as never))];
    }), 15_000);
});
