// etcdserverpb.Lease. Once auth is on, revoking a lease needs write on its keys and
// asking its time to live read on them (auth-store.ts); granting and keeping alive need nothing, as in etcd.
import type { ServiceImpl } from "@connectrpc/connect";
import type { LeaseKeepAliveRequest } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { Lease } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { Keyspace } from "../keyspace/contract.ts";
import type { AuthStore } from "./auth-store.ts";
import { caller } from "./caller.ts";
import { untilShutdown } from "./connections.ts";
import { etcdErrors, toConnectError } from "./errors.ts";
import { header, type ServerIdentity } from "./header.ts";

export function leaseService(keyspace: Keyspace, id: ServerIdentity, closing: AbortSignal, auth: AuthStore): ServiceImpl<typeof Lease> {
  const leases = keyspace.leases;
  return {
    leaseGrant: etcdErrors(async (r, ctx) => {
      // etcd asks no permission to grant, only a valid token if one is given
      auth.identify(caller(ctx));
      // etcd's storage quota check for a grant
      await keyspace.admitLease();
      const g = await leases.grant(r.TTL, r.ID);
      return { header: header(id, g.revision), ID: g.id, TTL: g.ttl, error: "" };
    }),
    leaseRevoke: etcdErrors(async (r, ctx) => {
      // revoking deletes the lease's keys: the caller must be allowed to write every one (etcd's checkLeasePuts)
      const ai = auth.identify(caller(ctx));
      if (auth.enabled && !auth.isRoot(ai)) {
        for (const key of (await leases.timeToLive(r.ID, true)).keys) auth.checkPut(ai, key);
      }
      const revision = await leases.revoke(r.ID);
      return { header: header(id, revision) };
    }),
    async *leaseKeepAlive(requests: AsyncIterable<LeaseKeepAliveRequest>) {
      try {
        // at shutdown the stream ends with Unavailable and the client keeps its leases alive elsewhere
        for await (const r of untilShutdown(requests, closing)) {
          // a lease that is gone is answered with TTL 0, as etcd does
          const k = await leases.renew(r.ID);
          yield { header: header(id, k.revision), ID: r.ID, TTL: k.ttl };
        }
      } catch (err) {
        throw toConnectError(err);
      }
    },
    leaseTimeToLive: etcdErrors(async (r, ctx) => {
      const ai = auth.identify(caller(ctx));
      // the caller must be allowed to read every key of the lease (etcd 3.4.26 and 3.5.9 on; earlier ones asked nothing)
      const checked = auth.enabled && !auth.isRoot(ai);
      const t = await leases.timeToLive(r.ID, r.keys || checked);
      if (checked) for (const key of t.keys) auth.checkRange(ai, key, new Uint8Array(0));
      // etcd answers a missing lease with TTL -1 rather than an error
      if (t.ttl < 0n) return { header: header(id, t.revision), ID: r.ID, TTL: -1n };
      return { header: header(id, t.revision), ID: r.ID, TTL: t.ttl, grantedTTL: t.grantedTtl, keys: r.keys ? t.keys : [] };
    }),
    leaseLeases: etcdErrors(async () => {
      const l = await leases.list();
      return { header: header(id, l.revision), leases: l.ids.map((ID) => ({ ID })) };
    }),
  };
}
