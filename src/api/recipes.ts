// etcd's Election and Lock services (v3electionpb, v3lockpb), answered as etcd's servers
// answer them: with its concurrency recipes (clientv3/concurrency) run over the KV, Lease
// and Watch services themselves, with the caller's context — as etcd runs them over a
// client of its own server — so every check the caller's own calls get applies to them.
//
// A campaign (or a lock) puts the key <name>/<lease in hex> if it is absent, then waits
// until every key under <name>/ created before it is deleted: the oldest key leads.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  Compare_CompareResult, Compare_CompareTarget, DeleteRangeRequestSchema, type KV, type Lease, LeaseGrantRequestSchema, RangeRequest_SortOrder, RangeRequest_SortTarget,
  RangeRequestSchema, type ResponseHeader, TxnRequestSchema, type Watch, type WatchRequest, WatchRequestSchema,
  type WatchResponse, WatchResponseSchema,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { Event_EventType, type KeyValue } from "../gen/etcd/api/mvccpb/kv_pb.ts";
import type { Election } from "../gen/etcd/api/v3electionpb/v3election_pb.ts";
import type { Lock } from "../gen/etcd/api/v3lockpb/v3lock_pb.ts";
import type { RangeOut, TxnOut } from "../mvcc/responses.ts";

/** the services the recipes run over: the same objects the gRPC server serves */
export interface RecipeParts {
  kv: ServiceImpl<typeof KV>;
  lease: ServiceImpl<typeof Lease>;
  watch: ServiceImpl<typeof Watch>;
}

/** a session's lease when the caller names none (concurrency's default TTL) */
const SESSION_TTL = 60n;

const missingLeader = () => new ConnectError(`"leader" field must be provided`, Code.Unknown);
const notLeader = () => new ConnectError("election: not leader", Code.Unknown);

export function electionService(p: RecipeParts): ServiceImpl<typeof Election> {
  const r = new Recipes(p);
  return {
    async campaign(req, ctx) {
      const lease = await r.session(req.lease, ctx);
      const prefix = withSlash(req.name);
      const key = keyOf(prefix, lease);
      const t = await r.txn(ctx, { compare: [created(key, 0n)], success: [put(key, req.value, lease)], failure: [get(key)] });
      let rev = t.header.revision;
      if (!t.succeeded) {
        // this session already campaigns: its key keeps its place, with the value asked for now
        const mine = rangeOf(t, 0).kvs[0]!;
        rev = mine.createRevision;
        if (!same(mine.value, req.value)) await r.proclaim(ctx, key, rev, lease, req.value);
      }
      try {
        await r.waitDeletes(ctx, prefix, rev - 1n);
      } catch (err) {
        // a campaign given up leaves no key behind to block the others
        if (ctx.signal.aborted) await r.resign({ ...ctx, signal: new AbortController().signal }, key, rev).catch(() => {});
        throw err;
      }
      return { header: t.header, leader: { name: req.name, key, rev, lease } };
    },
    async proclaim(req, ctx) {
      if (!req.leader) throw missingLeader();
      const l = req.leader;
      return { header: await r.proclaim(ctx, l.key, l.rev, l.lease, req.value) };
    },
    async leader(req, ctx) {
      const first = await r.first(ctx, withSlash(req.name));
      if (!first.kvs[0]) throw new ConnectError("election: no leader", Code.Unknown);
      return { header: first.header, kv: first.kvs[0] };
    },
    async *observe(req, ctx) {
      const prefix = withSlash(req.name);
      let shown: KeyValue | undefined;
      let from = 0n;
      for (;;) {
        // each change under the prefix may change the leader or its value: show those that do
        const first = await r.first(ctx, prefix);
        const kv = first.kvs[0];
        if (kv && (!shown || !same(kv.key, shown.key) || kv.modRevision !== shown.modRevision)) {
          shown = kv;
          yield { header: first.header, kv };
        }
        from = first.header.revision + 1n;
        await r.nextChange(ctx, prefix, from);
      }
    },
    async resign(req, ctx) {
      if (!req.leader) throw missingLeader();
      return { header: await r.resign(ctx, req.leader.key, req.leader.rev) };
    },
  };
}

export function lockService(p: RecipeParts): ServiceImpl<typeof Lock> {
  const r = new Recipes(p);
  return {
    async lock(req, ctx) {
      const lease = await r.session(req.lease, ctx);
      const prefix = withSlash(req.name);
      const key = keyOf(prefix, lease);
      const owner = firstCreated(prefix);
      const t = await r.txn(ctx, { compare: [created(key, 0n)], success: [put(key, new Uint8Array(0), lease), owner], failure: [get(key), owner] });
      const mine = t.succeeded ? t.header.revision : rangeOf(t, 0).kvs[0]!.createRevision;
      const holder = rangeOf(t, 1).kvs[0];
      if (!holder || holder.createRevision === mine) return { header: t.header, key };
      try {
        return { header: await r.waitDeletes(ctx, prefix, mine - 1n), key };
      } catch (err) {
        // a lock given up leaves no key behind to block the others
        await Promise.resolve(p.kv.deleteRange(create(DeleteRangeRequestSchema, { key }), { ...ctx, signal: new AbortController().signal })).catch(() => {});
        throw err;
      }
    },
    async unlock(req, ctx) {
      const out = await p.kv.deleteRange(create(DeleteRangeRequestSchema, { key: req.key }), ctx);
      return { header: out.header };
    },
  };
}

class Recipes {
  constructor(private readonly p: RecipeParts) {}

  /** the session's lease: the caller's, or one granted for it */
  async session(lease: bigint, ctx: HandlerContext): Promise<bigint> {
    if (lease !== 0n) return lease;
    const g = await this.p.lease.leaseGrant(create(LeaseGrantRequestSchema, { TTL: SESSION_TTL }), ctx);
    return g.ID as bigint;
  }

  async txn(ctx: HandlerContext, t: { compare: unknown[]; success: unknown[]; failure: unknown[] }): Promise<TxnOut> {
    return (await this.p.kv.txn(create(TxnRequestSchema, t as never), ctx)) as unknown as TxnOut;
  }

  /** the key created first under `prefix` (the leader, the lock's holder) */
  async first(ctx: HandlerContext, prefix: Uint8Array): Promise<RangeOut & { kvs: KeyValue[] }> {
    const op = firstCreated(prefix).request.value;
    return (await this.p.kv.range(create(RangeRequestSchema, op), ctx)) as never;
  }

  async proclaim(ctx: HandlerContext, key: Uint8Array, rev: bigint, lease: bigint, value: Uint8Array): Promise<ResponseHeader> {
    const t = await this.txn(ctx, { compare: [created(key, rev)], success: [put(key, value, lease)], failure: [] });
    if (!t.succeeded) throw notLeader();
    return t.header as ResponseHeader;
  }

  async resign(ctx: HandlerContext, key: Uint8Array, rev: bigint): Promise<ResponseHeader> {
    const t = await this.txn(ctx, { compare: [created(key, rev)], success: [{ request: { case: "requestDeleteRange", value: { key } } }], failure: [] });
    return t.header as ResponseHeader;
  }

  /** Waits until no key under `prefix` created at or before `maxCreate` is left (concurrency.waitDeletes). */
  async waitDeletes(ctx: HandlerContext, prefix: Uint8Array, maxCreate: bigint): Promise<ResponseHeader> {
    for (;;) {
      const last = await this.p.kv.range(create(RangeRequestSchema, {
        key: prefix, rangeEnd: prefixEnd(prefix), sortOrder: RangeRequest_SortOrder.DESCEND,
        sortTarget: RangeRequest_SortTarget.CREATE, limit: 1n, maxCreateRevision: maxCreate,
      }), ctx);
      const kv = last.kvs?.[0];
      if (!kv) return last.header as ResponseHeader;
      await this.watchUntil(ctx, { key: kv.key as Uint8Array, startRevision: last.header!.revision }, (w) =>
        w.events.some((e) => e.type === Event_EventType.DELETE));
    }
  }

  /** Waits for the next change under `prefix` from revision `from` on. */
  nextChange(ctx: HandlerContext, prefix: Uint8Array, from: bigint): Promise<void> {
    return this.watchUntil(ctx, { key: prefix, rangeEnd: prefixEnd(prefix), startRevision: from }, (w) => w.events.length > 0);
  }

  /** Watches as `create` asks, through the Watch service, until a response satisfies `done`. */
  private async watchUntil(ctx: HandlerContext, create_: Record<string, unknown>, done: (w: WatchResponse) => boolean): Promise<void> {
    const own = new AbortController();
    const stop = () => own.abort();
    ctx.signal.addEventListener("abort", stop);
    async function* requests(): AsyncGenerator<WatchRequest> {
      yield create(WatchRequestSchema, { requestUnion: { case: "createRequest", value: create_ as never } });
      // the request stream stays open while the watch is wanted
      await new Promise((resolve) => own.signal.addEventListener("abort", resolve));
    }
    try {
      for await (const resp of this.p.watch.watch(requests(), { ...ctx, signal: own.signal })) {
        // events travel pre-encoded (watch-encoding.ts)
        const w = fromBinary(WatchResponseSchema, toBinary(WatchResponseSchema, create(WatchResponseSchema, resp as never)));
        if (w.canceled) throw new ConnectError(w.cancelReason || "etcdserver: mvcc: required revision has been compacted", w.compactRevision ? Code.OutOfRange : Code.Unknown);
        if (done(w)) return;
      }
      if (ctx.signal.aborted) throw new ConnectError("context canceled", Code.Canceled);
      throw new ConnectError("lost watcher waiting for delete", Code.Unknown);
    } finally {
      ctx.signal.removeEventListener("abort", stop);
      own.abort();
    }
  }
}

function withSlash(name: Uint8Array): Uint8Array {
  return Buffer.concat([name, Buffer.from("/")]);
}

/** <prefix><lease in lowercase hex>, as concurrency names a session's key */
function keyOf(prefix: Uint8Array, lease: bigint): Uint8Array {
  return Buffer.concat([prefix, Buffer.from(lease.toString(16))]);
}

function prefixEnd(prefix: Uint8Array): Uint8Array {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return new Uint8Array([0]);
}

function created(key: Uint8Array, rev: bigint) {
  return { key, target: Compare_CompareTarget.CREATE, result: Compare_CompareResult.EQUAL, targetUnion: { case: "createRevision", value: rev } };
}

function put(key: Uint8Array, value: Uint8Array, lease: bigint) {
  return { request: { case: "requestPut", value: { key, value, lease } } };
}

function get(key: Uint8Array) {
  return { request: { case: "requestRange", value: { key } } };
}

function firstCreated(prefix: Uint8Array) {
  return {
    request: {
      case: "requestRange" as const,
      value: { key: prefix, rangeEnd: prefixEnd(prefix), sortOrder: RangeRequest_SortOrder.ASCEND, sortTarget: RangeRequest_SortTarget.CREATE, limit: 1n },
    },
  };
}

function rangeOf(t: TxnOut, i: number): RangeOut & { kvs: KeyValue[] } {
  const r = t.responses[i]?.response;
  if (r?.case !== "responseRange") throw new ConnectError("strata: a recipe's txn answered without its range", Code.Internal);
  return r.value as never;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}
