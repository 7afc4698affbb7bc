// The client of an upstream etcd, reached over gRPC with the same generated types strata
// serves. It is not a Backend: etcd numbers its own revisions, so it serves a whole
// Keyspace (etcd-keyspace.ts) that hands it whole requests. etcd's own errors keep etcd's
// code and message; a call that cannot reach it fails with Unavailable naming it.
import { readFileSync } from "node:fs";
import { type CallOptions, type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
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
import type { LeaseService } from "../../keyspace/contract.ts";
import { type Deadline, DEFAULT_REQUEST_TIMEOUT_MS, dueAt, requestDeadline } from "../../mvcc/deadline.ts";
import { backendTimedOut, backendUnavailable, deadlineExceeded, type ErrorCode, EtcdError } from "../../mvcc/errors.ts";
import type { Rev } from "../../mvcc/types.ts";
import { RequestQueue } from "./queue.ts";

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

/** how long the Status asking whether a silent etcd is there at all may take */
const PROBE_MS = 1000;

/** etcd's errors all start so; anything else is the connection's */
const ETCD_MESSAGE = /^(etcdserver|mvcc|etcdserver\/api|grpc):/;

export class Upstream implements LeaseService {
  /** the endpoint calls go to; a call that cannot reach it moves later calls to the next one */
  private current = 0;
  private keepAlives: KeepAliveStream | undefined;

  private constructor(
    /** the URL without its TLS parameters */
    readonly name: string,
    /** how errors name it: the URL, or "NAME (URL)" among several backends */
    private readonly label: string,
    private readonly endpoints: Endpoint[],
    /** a call to an etcd that does not answer its Status is answered by then (--request-timeout) */
    private readonly timeoutMs: number,
  ) {}

  /**
   * etcd://HOST:PORT[,HOST:PORT...] (cleartext) or etcds://HOST:PORT[,...]?ca=FILE&cert=FILE&key=FILE
   * (TLS; the files default to `tls`). Several hosts are members of one etcd cluster.
   * `backend` is its name in a topology of several backends.
   */
  static fromUrl(url: string, tls: UpstreamTls = {}, backend?: string, requestTimeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Upstream {
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
    return new Upstream(name, backend === undefined ? name : `${backend} (${name})`, endpoints, requestTimeoutMs);
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

  /**
   * A call to the current endpoint, answered by the deadline (ours, --request-timeout, or
   * the client's) unless etcd is there and merely busy: once our deadline passes, a Status
   * with a short timeout asks whether etcd answers at all; while it does, the call goes on
   * (a large list takes the time it needs), and when it does not, the call is abandoned
   * with Unavailable (a write "may have been applied", as etcd's own "request timed out").
   */
  private async call<T>(fn: (e: Endpoint, o: CallOptions) => Promise<T>, deadline?: Deadline, write = false): Promise<T> {
    const at = this.current;
    const endpoint = this.endpoints[at]!;
    const abort = new AbortController();
    const asked = deadline ?? requestDeadline();
    let due = dueAt(asked, this.timeoutMs);
    const running = fn(endpoint, { signal: abort.signal }).then((value) => ({ value }), (error: unknown) => ({ error }));
    // resolves to the call's outcome, or undefined once `at` (ms since the epoch) passed
    const by = async (at: number) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<undefined>((r) => {
        timer = setTimeout(() => r(undefined), Math.max(0, at - Date.now()));
      });
      const outcome = await Promise.race([running, late]);
      clearTimeout(timer);
      return outcome;
    };
    const settle = (outcome: { value: T } | { error: unknown }): T => {
      if ("error" in outcome) throw this.failure(outcome.error, at);
      return outcome.value;
    };
    try {
      for (;;) {
        // the client's deadline is the client's: no verdict on etcd is needed
        const outcome = await by(due.client ? due.at : due.at - PROBE_MS);
        if (outcome) return settle(outcome);
        if (due.client) throw deadlineExceeded();
        // the probe's verdict arrives by our deadline; the call may still end first
        const probe = this.answers(endpoint);
        const first = await Promise.race([running, probe.then((alive) => ({ alive }))]);
        if (!("alive" in first)) return settle(first);
        if (!first.alive) {
          const last = await by(Date.now());
          if (last) return settle(last);
          throw backendTimedOut(this.label, this.timeoutMs, write ? "may have been applied" : undefined);
        }
        due = dueAt({ start: Date.now(), client: asked.client }, this.timeoutMs);
      }
    } finally {
      // an abandoned call is cancelled at etcd too
      abort.abort();
    }
  }

  /** Whether etcd answers a Status within PROBE_MS. */
  private async answers(e: Endpoint): Promise<boolean> {
    try {
      await e.maintenance.status({}, { timeoutMs: PROBE_MS });
      return true;
    } catch {
      return false;
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

  range(r: RangeRequest, deadline?: Deadline): Promise<RangeResponse> {
    return this.call((e, o) => e.kv.range(r, o), deadline);
  }
  put(r: PutRequest, deadline?: Deadline): Promise<PutResponse> {
    return this.call((e, o) => e.kv.put(r, o), deadline, true);
  }
  deleteRange(r: DeleteRangeRequest, deadline?: Deadline): Promise<DeleteRangeResponse> {
    return this.call((e, o) => e.kv.deleteRange(r, o), deadline, true);
  }
  txn(r: TxnRequest, deadline?: Deadline): Promise<TxnResponse> {
    return this.call((e, o) => e.kv.txn(r, o), deadline, true);
  }
  compact(r: CompactionRequest): Promise<CompactionResponse> {
    return this.call((e, o) => e.kv.compact(r, o), undefined, true);
  }

  status(): Promise<StatusResponse> {
    return this.call((e, o) => e.maintenance.status({}, o));
  }
  alarm(r: AlarmRequest): Promise<AlarmResponse> {
    return this.call((e, o) => e.maintenance.alarm(r, o));
  }
  defragment(): Promise<unknown> {
    return this.call((e, o) => e.maintenance.defragment({}, o));
  }
  hash(): Promise<HashResponse> {
    return this.call((e, o) => e.maintenance.hash({}, o));
  }
  hashKV(r: HashKVRequest): Promise<HashKVResponse> {
    return this.call((e, o) => e.maintenance.hashKV(r, o));
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

  async grant(ttl: Rev, id: Rev): Promise<{ id: Rev; ttl: Rev; revision: Rev }> {
    const r = await this.call((e, o) => e.lease.leaseGrant({ TTL: ttl, ID: id }, o), undefined, true);
    // etcd 3.4 can still put an error in the response instead of the status
    if (r.error) throw new EtcdError("Unknown", r.error);
    return { id: r.ID, ttl: r.TTL, revision: r.header!.revision };
  }

  async revoke(id: Rev): Promise<Rev> {
    return (await this.call((e, o) => e.lease.leaseRevoke({ ID: id }, o), undefined, true)).header!.revision;
  }

  /** remaining TTL -1 when etcd has no such lease */
  async timeToLive(id: Rev, keys: boolean): Promise<{ ttl: Rev; grantedTtl: Rev; keys: Uint8Array[]; revision: Rev }> {
    const r = await this.call((e, o) => e.lease.leaseTimeToLive({ ID: id, keys }, o));
    return { ttl: r.TTL, grantedTtl: r.grantedTTL, keys: r.keys, revision: r.header!.revision };
  }

  async list(): Promise<{ ids: Rev[]; revision: Rev }> {
    const r = await this.call((e, o) => e.lease.leaseLeases({}, o));
    return { ids: r.leases.map((l) => l.ID), revision: r.header!.revision };
  }

  /** One keepalive round trip, over a stream all of strata's keepalives share; TTL 0: the lease is gone. */
  renew(id: Rev): Promise<{ ttl: Rev; revision: Rev }> {
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
