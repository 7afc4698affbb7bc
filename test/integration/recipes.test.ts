// etcd's Election and Lock services over gRPC, against a real etcd 3.4: a campaign that
// waits for the leader to resign, one whose client gives up (it leaves no key behind), and
// a lock that waits for the holder's unlock. (The JSON gateway's paths to them are checked
// in http-gateway.test.ts.)
import { expect, test } from "bun:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { KV, RangeRequest_SortOrder, RangeRequest_SortTarget } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { Election } from "../../src/gen/etcd/api/v3electionpb/v3election_pb.ts";
import { Lock } from "../../src/gen/etcd/api/v3lockpb/v3lock_pb.ts";
import { useServers, type Side } from "../support/differential.ts";

const sides = useServers();

const b = (s: string) => Buffer.from(s);
const text = (x: Uint8Array | undefined) => Buffer.from(x ?? []).toString();

function clients(side: Side) {
  const transport = createGrpcTransport({ baseUrl: `http://${side.endpoint}` });
  return { election: createClient(Election, transport), lock: createClient(Lock, transport), kv: createClient(KV, transport) };
}

/** the keys under `prefix` oldest first, each session's lease (the key's last part) named by order of appearance */
async function keysUnder(kv: ReturnType<typeof clients>["kv"], prefix: string, names: Map<string, string>): Promise<string[]> {
  const r = await kv.range({ key: b(prefix), rangeEnd: b(`${prefix.slice(0, -1)}0`), sortTarget: RangeRequest_SortTarget.CREATE, sortOrder: RangeRequest_SortOrder.ASCEND });
  return r.kvs.map((k) => {
    const key = text(k.key);
    const lease = key.slice(prefix.length);
    if (!names.has(lease)) names.set(lease, `S${names.size + 1}`);
    return `${prefix}${names.get(lease)}=${text(k.value)}`;
  });
}

async function scenario(side: Side): Promise<unknown[]> {
  const { election, lock, kv } = clients(side);
  const names = new Map<string, string>();
  const out: unknown[] = [];
  const a = await election.campaign({ name: b("/grpc-election"), value: b("a") });
  let bLeads = false;
  const second = election.campaign({ name: b("/grpc-election"), value: b("b") }).then((r) => ((bLeads = true), r));
  // b waits behind a: both keys are there, a's first
  for (let i = 0; i < 100 && (await keysUnder(kv, "/grpc-election/", names)).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  out.push(await keysUnder(kv, "/grpc-election/", names), bLeads);
  await election.resign({ leader: a.leader });
  const bLeader = (await second).leader!;
  out.push(text((await election.leader({ name: b("/grpc-election") })).kv?.value));
  // a third campaign whose client gives up while it waits leaves no key behind
  const giveUp = new AbortController();
  const third = election.campaign({ name: b("/grpc-election"), value: b("c") }, { signal: giveUp.signal }).catch((err) => String(err));
  for (let i = 0; i < 100 && (await keysUnder(kv, "/grpc-election/", names)).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  out.push(await keysUnder(kv, "/grpc-election/", names));
  giveUp.abort();
  out.push(await third);
  for (let i = 0; i < 100 && (await keysUnder(kv, "/grpc-election/", names)).length > 1; i++) await new Promise((r) => setTimeout(r, 50));
  out.push(await keysUnder(kv, "/grpc-election/", names));
  await election.resign({ leader: bLeader });
  // a lock waits for its holder's unlock
  const held = await lock.lock({ name: b("/grpc-lock") });
  let got = false;
  const next = lock.lock({ name: b("/grpc-lock") }).then((r) => ((got = true), r));
  for (let i = 0; i < 100 && (await keysUnder(kv, "/grpc-lock/", names)).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  out.push(got);
  await lock.unlock({ key: held.key });
  await lock.unlock({ key: (await next).key });
  out.push(await keysUnder(kv, "/grpc-lock/", names));
  return out;
}

test("Election and Lock over gRPC answer and wait as etcd's do; a campaign given up leaves no key", async () => {
  const [etcd, strata] = [await scenario(sides()[0]!), await scenario(sides()[1]!)];
  expect(etcd).toEqual([
    ["/grpc-election/S1=a", "/grpc-election/S2=b"], false, "b",
    ["/grpc-election/S2=b", "/grpc-election/S3=c"], "ConnectError: [canceled] The operation was aborted.",
    ["/grpc-election/S2=b"], false, [],
  ]);
  expect(strata).toEqual(etcd);
}, 60_000);
