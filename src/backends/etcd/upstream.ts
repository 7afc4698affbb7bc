// The client of an upstream etcd, reached over gRPC with the same generated types strata
// serves. It is not a Backend: etcd numbers its own revisions, so it serves a whole
// Keyspace (etcd-keyspace.ts) that hands it whole requests. etcd's own errors keep etcd's
// code and message; a call that cannot reach it fails with Unavailable naming it.
import { readFileSync } from "node:fs";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  type AlarmRequest,
  type AlarmResponse,
  type CompactionRequest,
  type CompactionResponse,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type HashKVRequest,
  type HashKVResponse,
  type HashResponse,
  KV,
  Lease,
  type LeaseKeepAliveRequest,
  type LeaseKeepAliveResponse,
  Maintenance,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  type StatusResponse,
  type TxnRequest,
  type TxnResponse,
  Watch,
  type WatchRequest,
  type WatchResponse,
} from "../../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WatchRequestSchema } from "../../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { UpstreamLeaseService } from "../../keyspace/contract.ts";
import { backendUnavailable, type ErrorCode, EtcdError } from "../../mvcc/errors.ts";
import type { Rev } from "../../mvcc/types.ts";
import { RequestQueue } from "./queue.ts";

export const UPSTREAM_SCHEMES = ["etcd://", "etcds://"];

export function isUpstreamUrl(url: string): boolean {
  return UPSTREAM_SCHEMES.some((s) => url.startsWith(s));
}

/** TLS files for etcds:// upstreams whose URL names none (the --etcd-cafile/certfile/keyfile settings) */
export interface UpstreamTls {
  ca?: string;
  cert?: string;
  key?: string;
}

interface Endpoint {
  session: Http2SessionManager;
  kv: Client<typeof KV>;
  watch: Client<typeof Watch>;
  lease: Client<typeof Lease>;
  maintenance: Client<typeof Maintenance>;
}

/** etcd's errors all start so; anything else is the connection's */
const ETCD_MESSAGE = /^(etcdserver|mvcc|etcdserver\/api|grpc):/;

export class Upstream implements UpstreamLeaseService {
  /** the endpoint calls go to; a call that cannot reach it moves later calls to the next one */
  private current = 0;
  private keepAlives: KeepAliveStream | undefined;

  private constructor(
    /** the URL without its TLS parameters */
    readonly name: string,
    /** how errors name it: the URL, or "NAME (URL)" among several backends */
    private readonly label: string,
    private readonly endpoints: Endpoint[],
  ) {}

  /**
   * etcd://HOST:PORT[,HOST:PORT...] (cleartext) or etcds://HOST:PORT[,...]?ca=FILE&cert=FILE&key=FILE
   * (TLS; the files default to `tls`). Several hosts are members of one etcd cluster.
   * `backend` is its name in a topology of several backends.
   */
  static fromUrl(url: string, tls: UpstreamTls = {}, backend?: string): Upstream {
    const m = /^(etcds?):\/\/([^/?#]+)\/?(?:\?(.*))?$/.exec(url);
    if (!m) throw new Error(`backend ${url}: expected etcd://HOST:PORT or etcds://HOST:PORT?ca=FILE&cert=FILE&key=FILE`);
    const [, scheme, hosts, query] = m as unknown as [string, string, string, string | undefined];
    const name = `${scheme}://${hosts}`;
    const params = new URLSearchParams(query ?? "");
    for (const k of params.keys()) {
      if (!["ca", "cert", "key"].includes(k)) throw new Error(`backend ${name}: unknown parameter "${k}"; etcds:// takes ca, cert and key (file paths)`);
    }
    const secure = scheme === "etcds";
    if (!secure && [...params.keys()].length > 0) throw new Error(`backend ${name}: ca, cert and key need TLS: write etcds://`);
    const files = { ca: params.get("ca") ?? tls.ca, cert: params.get("cert") ?? tls.cert, key: params.get("key") ?? tls.key };
    if (secure && !files.cert !== !files.key) throw new Error(`backend ${name}: a client certificate needs both cert and key`);
    const read = (what: string, path: string | undefined) => {
      if (!path) return undefined;
      try {
        return readFileSync(path);
      } catch (err) {
        throw new Error(`backend ${name}: cannot read the ${what} file ${path}: ${(err as Error).message}`);
      }
    };
    const nodeOptions = secure ? { ca: read("ca", files.ca), cert: read("cert", files.cert), key: read("key", files.key) } : {};
    const endpoints = hosts.split(",").map((host) => {
      if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d+$/.test(host)) throw new Error(`backend ${name}: "${host}" is not HOST:PORT`);
      const baseUrl = `${secure ? "https" : "http"}://${host}`;
      // pings find a dead connection under a quiet watch or keepalive stream
      const session = new Http2SessionManager(baseUrl, { pingIntervalMs: 10_000, pingTimeoutMs: 10_000 }, nodeOptions);
      const transport = createGrpcTransport({ baseUrl, sessionManager: session, acceptCompression: [] });
      return {
        session,
        kv: createClient(KV, transport),
        watch: createClient(Watch, transport),
        lease: createClient(Lease, transport),
        maintenance: createClient(Maintenance, transport),
      };
    });
    return new Upstream(name, backend === undefined ? name : `${backend} (${name})`, endpoints);
  }

  /**
   * Checks that etcd answers (trying each member once); its cluster and member ids name
   * the keyspace strata serves from it.
   */
  async open(): Promise<{ clusterId: bigint; memberId: bigint; revision: Rev; version: string }> {
    for (let tries = 1; ; tries++) {
      try {
        const s = await this.status();
        return { clusterId: s.header!.clusterId, memberId: s.header!.memberId, revision: s.header!.revision, version: s.version };
      } catch (err) {
        const unreachable = err instanceof EtcdError && err.code === "Unavailable";
        if (tries < this.endpoints.length && unreachable) continue;
        const prefix = `strata: backend ${this.label} `;
        throw unreachable && err.message.startsWith(prefix) ? new Error(err.message.slice(prefix.length)) : err;
      }
    }
  }

  close(): void {
    this.keepAlives?.requests.end();
    for (const e of this.endpoints) e.session.abort();
  }

  private async call<T>(fn: (e: Endpoint) => Promise<T>): Promise<T> {
    const at = this.current;
    try {
      return await fn(this.endpoints[at]!);
    } catch (err) {
      throw this.failure(err, at);
    }
  }

  /** An error from a call to endpoint `at`, as strata answers it. */
  failure(err: unknown, at = this.current): EtcdError {
    if (err instanceof EtcdError) return err;
    const e = ConnectError.from(err);
    const transport = [Code.Unavailable, Code.Unknown, Code.Internal, Code.DeadlineExceeded, Code.Canceled].includes(e.code);
    if (!transport || ETCD_MESSAGE.test(e.rawMessage)) return new EtcdError(Code[e.code] as ErrorCode, e.rawMessage);
    if (at === this.current) this.current = (at + 1) % this.endpoints.length;
    return backendUnavailable(this.label, e.rawMessage);
  }

  /** A watch or keepalive stream that broke: whatever the cause, the upstream is unavailable to it. */
  private streamFailure(err: unknown, at: number): EtcdError {
    const e = this.failure(err, at);
    return e.message.startsWith(`strata: backend ${this.label} `) ? e : backendUnavailable(this.label, e.message);
  }

  range(r: RangeRequest): Promise<RangeResponse> {
    return this.call((e) => e.kv.range(r));
  }
  put(r: PutRequest): Promise<PutResponse> {
    return this.call((e) => e.kv.put(r));
  }
  deleteRange(r: DeleteRangeRequest): Promise<DeleteRangeResponse> {
    return this.call((e) => e.kv.deleteRange(r));
  }
  txn(r: TxnRequest): Promise<TxnResponse> {
    return this.call((e) => e.kv.txn(r));
  }
  compact(r: CompactionRequest): Promise<CompactionResponse> {
    return this.call((e) => e.kv.compact(r));
  }

  status(): Promise<StatusResponse> {
    return this.call((e) => e.maintenance.status({}));
  }
  alarm(r: AlarmRequest): Promise<AlarmResponse> {
    return this.call((e) => e.maintenance.alarm(r));
  }
  defragment(): Promise<unknown> {
    return this.call((e) => e.maintenance.defragment({}));
  }
  hash(): Promise<HashResponse> {
    return this.call((e) => e.maintenance.hash({}));
  }
  hashKV(r: HashKVRequest): Promise<HashKVResponse> {
    return this.call((e) => e.maintenance.hashKV(r));
  }

  /** A watch stream; if it breaks, it throws the upstream's unavailability, naming it. */
  async *watch(requests: AsyncIterable<MessageInitShape<typeof WatchRequestSchema>>, signal: AbortSignal): AsyncGenerator<WatchResponse> {
    const at = this.current;
    try {
      yield* this.endpoints[at]!.watch.watch(requests as AsyncIterable<WatchRequest>, { signal });
    } catch (err) {
      throw this.streamFailure(err, at);
    }
    throw this.streamFailure(new Error("the watch stream ended"), at);
  }

  async leaseGrant(ttl: Rev, id: Rev): Promise<{ id: Rev; ttl: Rev; revision: Rev }> {
    const r = await this.call((e) => e.lease.leaseGrant({ TTL: ttl, ID: id }));
    // etcd 3.4 can still put an error in the response instead of the status
    if (r.error) throw new EtcdError("Unknown", r.error);
    return { id: r.ID, ttl: r.TTL, revision: r.header!.revision };
  }

  async leaseRevoke(id: Rev): Promise<Rev> {
    return (await this.call((e) => e.lease.leaseRevoke({ ID: id }))).header!.revision;
  }

  /** remaining TTL -1 when etcd has no such lease */
  async leaseTimeToLive(id: Rev, keys: boolean): Promise<{ ttl: Rev; grantedTtl: Rev; keys: Uint8Array[]; revision: Rev }> {
    const r = await this.call((e) => e.lease.leaseTimeToLive({ ID: id, keys }));
    return { ttl: r.TTL, grantedTtl: r.grantedTTL, keys: r.keys, revision: r.header!.revision };
  }

  async leaseIds(): Promise<{ ids: Rev[]; revision: Rev }> {
    const r = await this.call((e) => e.lease.leaseLeases({}));
    return { ids: r.leases.map((l) => l.ID), revision: r.header!.revision };
  }

  /** One keepalive round trip, over a stream all of strata's keepalives share; TTL 0: the lease is gone. */
  keepAlive(id: Rev): Promise<{ ttl: Rev; revision: Rev }> {
    const s = (this.keepAlives ??= this.openKeepAlives());
    return new Promise((resolve, reject) => {
      const list = s.waiting.get(id) ?? [];
      list.push({ resolve, reject });
      s.waiting.set(id, list);
      s.requests.push({ ID: id });
    });
  }

  private openKeepAlives(): KeepAliveStream {
    const at = this.current;
    const s: KeepAliveStream = { requests: new RequestQueue(), waiting: new Map() };
    void (async () => {
      let failure: EtcdError;
      try {
        const responses = this.endpoints[at]!.lease.leaseKeepAlive(s.requests as AsyncIterable<LeaseKeepAliveRequest>);
        for await (const r of responses as AsyncIterable<LeaseKeepAliveResponse>) {
          const list = s.waiting.get(r.ID);
          // etcd answers each request once, in order
          list?.shift()?.resolve({ ttl: r.TTL, revision: r.header!.revision });
          if (list?.length === 0) s.waiting.delete(r.ID);
        }
        failure = backendUnavailable(this.label, "the keepalive stream ended");
      } catch (err) {
        failure = this.streamFailure(err, at);
      }
      if (this.keepAlives === s) this.keepAlives = undefined;
      s.requests.end();
      for (const list of s.waiting.values()) for (const w of list) w.reject(failure);
    })();
    return s;
  }
}

interface KeepAliveStream {
  requests: RequestQueue<{ ID: Rev }>;
  waiting: Map<Rev, Array<{ resolve: (r: { ttl: Rev; revision: Rev }) => void; reject: (e: unknown) => void }>>;
}
