// `strata import --from http://etcd:2379 [--config FILE]`: copies a live etcd's keyspace,
// read at one revision, into the backends the rules name, with its revisions, versions
// and leases, so a cluster can move from etcd onto strata. New writes continue above
// etcd's revision. Run it with strata stopped; writes made to etcd after the read are
// not copied (stop kube-apiserver first, or import again).
import { createClient } from "@connectrpc/connect";
import { CLIENT_TLS_USAGE, clientTlsFlags, grpcClientTransport } from "./client-transport.ts";
import { KV, Lease } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { type Config, ConfigError } from "../config/config.ts";
import { loadCheckedConfig } from "./config.ts";
import type { KeyValue } from "../mvcc/types.ts";
import { copyInto, ensureLease } from "../router/copy.ts";
import { keyCount } from "../router/key-count.ts";
import { openRouter, UPSTREAM_KEYS_STAY, upstreamIn } from "../router/open.ts";
import { keyString } from "../mvcc/keyrange.ts";

const PAGE = 1000;

export async function importCommand(args: string[]): Promise<number> {
  const i = args.indexOf("--from");
  const from = i >= 0 ? args[i + 1] : undefined;
  if (!from || !/^https?:\/\//.test(from)) {
    console.error(`usage: strata import --from http(s)://ETCD:2379 ${CLIENT_TLS_USAGE} [--config FILE | --backend URL]`);
    return 2;
  }
  let transport;
  try {
    transport = grpcClientTransport(from, clientTlsFlags(args));
  } catch (err) {
    console.error(`strata import: ${(err as Error).message}`);
    return 2;
  }
  // the rest of the command line is strata's own configuration
  const clientFlags = new Set(["--from", "--cacert", "--cert", "--key"]);
  const own = args.filter((a, j) => !clientFlags.has(a) && !clientFlags.has(args[j - 1]!) && ![...clientFlags].some((f) => a.startsWith(`${f}=`)));
  let config: Config;
  try {
    config = loadCheckedConfig(own, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`strata: configuration error: ${err.message}`);
      return 2;
    }
    throw err;
  }
  const upstream = upstreamIn(config.topology);
  if (upstream !== undefined) {
    console.error(`strata import: backend ${upstream} is an upstream etcd; import copies an etcd's keys into strata's own databases and ${UPSTREAM_KEYS_STAY}. To serve an etcd's keys where they are, make it a backend (etcd://HOST:2379) instead of importing them`);
    return 2;
  }
  const kv = createClient(KV, transport);
  const lease = createClient(Lease, transport);
  const log = (level: string, msg: string, fields: Record<string, unknown> = {}) =>
    console.error(JSON.stringify({ level, msg, ...fields }));
  let router;
  try {
    ({ router } = await openRouter(config, log));
  } catch (err) {
    console.error(`strata import: cannot open the backends: ${(err as Error).message}`);
    return 1;
  }
  try {
    // one revision for the whole copy
    const first = await kv.range({ key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]), countOnly: true });
    const revision = first.header!.revision;
    const total = Number(first.count);
    console.error(`strata import: ${total} keys at revision ${revision} from ${from}`);
    // leases first, so keys attached to them find them
    const { leases } = await lease.leaseLeases({});
    for (const l of leases) {
      const t = await lease.leaseTimeToLive({ ID: l.ID });
      if (t.TTL <= 0n) continue;
      const record = { id: l.ID, ttl: t.grantedTTL, expiresAt: Date.now() + Number(t.TTL) * 1000 };
      for (const p of router.parts) await ensureLease(p.store, record);
    }
    let copied = 0;
    let key = new Uint8Array([0]);
    for (;;) {
      const page = await kv.range({ key, rangeEnd: new Uint8Array([0]), revision, limit: BigInt(PAGE) });
      const byPart = new Map<string, KeyValue[]>();
      for (const k of page.kvs) {
        const name = router.routing.route(keyString(k.key));
        const kvOut: KeyValue = { key: k.key, value: k.value, createRevision: k.createRevision, modRevision: k.modRevision, version: k.version, lease: k.lease };
        byPart.set(name, [...(byPart.get(name) ?? []), kvOut]);
      }
      for (const [name, kvs] of byPart) await copyInto(router.byName.get(name)!.store, kvs);
      copied += page.kvs.length;
      process.stderr.write(`\rstrata import: ${copied}/${total} keys copied`);
      if (!page.more || page.kvs.length === 0) break;
      const last = page.kvs.at(-1)!.key;
      key = new Uint8Array(last.length + 1);
      key.set(last);
    }
    process.stderr.write("\n");
    // every backend continues above etcd's revision
    for (const p of router.parts) await p.store.advance(revision);
    const counts = await Promise.all(router.parts.map(async (p) => [p.name, await keyCount(p.backend)] as const));
    const sum = counts.reduce((n, [, c]) => n + Number(c), 0);
    if (sum !== total) {
      console.error(`strata import: verification failed: etcd had ${total} keys, the backends hold ${sum}`);
      return 1;
    }
    console.error(`strata import: done: ${total} keys, ${leases.length} leases, revision ${revision} (${counts.map(([n, c]) => `${n}=${c}`).join(", ")})`);
    return 0;
  } catch (err) {
    process.stderr.write("\n");
    console.error(`strata import: stopped: ${(err as Error).message}`);
    return 1;
  } finally {
    await router.drain();
    await router.close();
  }
}
