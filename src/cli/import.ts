// `strata import --from http://etcd:2379 [--config FILE]`: copies a live etcd's keyspace,
// read at one revision, into the backends the rules name, with its revisions, versions
// and leases, so a cluster can move from etcd onto strata. New writes continue above
// etcd's revision. Run it with strata stopped; writes made to etcd after the read are
// not copied (stop kube-apiserver first, or import again).
// `strata import --from-snapshot FILE` does the same from an etcd snapshot file
// (import-snapshot.ts); what both share is in import-target.ts.
import { createClient } from "@connectrpc/connect";
import { CLIENT_TLS_USAGE, clientTlsFlags, grpcClientTransport } from "./client-transport.ts";
import { KV, Lease } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { KeyValue } from "../mvcc/types.ts";
import { finishImport, openImportTarget, placeKeys, placeLease, runImport } from "./import-target.ts";
import { importSnapshotCommand } from "./import-snapshot.ts";

const PAGE = 1000;

export async function importCommand(args: string[]): Promise<number> {
  if (args.some((a) => a === "--from-snapshot" || a.startsWith("--from-snapshot="))) return importSnapshotCommand(args);
  const i = args.indexOf("--from");
  const from = i >= 0 ? args[i + 1] : undefined;
  if (!from || !/^https?:\/\//.test(from)) {
    console.error(`usage: strata import --from http(s)://ETCD:2379 ${CLIENT_TLS_USAGE} [--config FILE | --backend URL]`);
    console.error(`       strata import --from-snapshot FILE [--config FILE | --backend URL]`);
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
  const clientFlags = new Set(["--from", "--cacert", "--cert", "--key", "--user"]);
  const own = args.filter((a, j) => !clientFlags.has(a) && !clientFlags.has(args[j - 1]!) && ![...clientFlags].some((f) => a.startsWith(`${f}=`)));
  const kv = createClient(KV, transport);
  const lease = createClient(Lease, transport);
  const router = await openImportTarget(own);
  if (typeof router === "number") return router;
  return runImport(router, async () => {
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
      await placeLease(router, { id: l.ID, ttl: t.grantedTTL, expiresAt: Date.now() + Number(t.TTL) * 1000 });
    }
    let copied = 0;
    let key = new Uint8Array([0]);
    for (;;) {
      const page = await kv.range({ key, rangeEnd: new Uint8Array([0]), revision, limit: BigInt(PAGE) });
      const kvs: KeyValue[] = page.kvs.map((k) => ({ key: k.key, value: k.value, createRevision: k.createRevision, modRevision: k.modRevision, version: k.version, lease: k.lease }));
      await placeKeys(router, kvs);
      copied += page.kvs.length;
      process.stderr.write(`\rstrata import: ${copied}/${total} keys copied`);
      if (!page.more || page.kvs.length === 0) break;
      const last = page.kvs.at(-1)!.key;
      key = new Uint8Array(last.length + 1);
      key.set(last);
    }
    process.stderr.write("\n");
    return finishImport(router, revision, total, leases.length);
  });
}
