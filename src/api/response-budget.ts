// Range responses admitted against a memory budget: a read starts only while the
// responses already read and not yet sent fit in the budget, so a storm of lists waits its
// turn instead of holding every response in memory at once (and a thousand lists cannot
// take the process down). A response larger than the whole budget goes alone. Writes that
// return no key-values and counts are never held; reads of one key only once the budget is
// a quarter over. Before a read the size of its response is not known: it is guessed from
// the last response of the same kind (the same range end, limit and keys-only: a
// resource's list, or its pages), else a fixed guess; at most MAX_UNSETTLED reads go on a
// guess at once. A response counts until
// its bytes went out or were dropped with their stream, however long that takes: a client
// that does not read holds its share until the HTTP/2 layer resets its stalled stream
// (--stalled-stream-timeout), so the memory held is bounded by the budget, not by time. A
// read that cannot get in within its wait is refused with ResourceExhausted. Besides Range:
// a Txn's range results (up to max-txn-ops lists in one answer), and the previous
// key-values a Put or DeleteRange returns when asked (prev_kv), which are reads as large.
import { createHash } from "node:crypto";
import type { DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type DeleteRangeRequest,
  DeleteRangeRequestSchema,
  type PutRequest,
  PutRequestSchema,
  type RangeRequest,
  RangeRequestSchema,
  type RequestOp,
  type TxnRequest,
  TxnRequestSchema,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { whenDroppedCollected } from "../util/memory-pressure.ts";
import type { H2Stream } from "./h2/stream.ts";

/** bytes of range responses read and not yet sent, at most (beyond one response alone) */
export const RESPONSE_BUDGET_BYTES = 64 * 1024 * 1024;
/** how long a read waits for room, at most: past it, it is refused */
export const ADMIT_WAIT_MS = 60_000;
/** the guess for a kind of range not seen yet */
const UNKNOWN_BYTES = 8 * 1024 * 1024;
/** kinds remembered; past this many the memory starts again */
const KINDS = 10_000;
/**
 * a read guessed at most this large (one key, a small page) does not queue behind larger
 * ones, and may take the budget a quarter over its limit: large reads held by clients that
 * do not read hold back the small ones only once they fill that too
 */
const SMALL_BYTES = 64 * 1024;
/** the kind of a Range of one key: one value, up to max-request-bytes, usually a few KiB */
const ONE_KEY = "one key";
/** what a read of one key is taken for before it is read (not learned: keys differ) */
const ONE_KEY_BYTES = 16 * 1024;
/**
 * the kind of a write that returns at most one key-value: kube-apiserver's update (the
 * object when its compare failed), a Put or single-key delete with prev_kv. Taken for one
 * key, but counted apart from reads on a guess: a write is unsettled until it committed,
 * and MAX_UNSETTLED of them would cap the writes a group commit gathers
 */
const WRITE_ONE_KEY = "write one key";
/**
 * reads admitted whose size is not known yet: each may turn out larger than its guess, so
 * their number bounds how far the budget can be overshot
 */
const MAX_UNSETTLED = 16;
/**
 * writes of one key admitted whose answer is not known yet: beyond what kube-apiservers
 * keep in flight, and a bound on the overshoot (that many values) should each answer be
 * a large value a client does not read
 */
const MAX_UNSETTLED_WRITES = 128;

/** a call's end as admit() listens to it without an AbortSignal (an H2Stream is one) */
export interface CallEnd {
  readonly closed: boolean;
  /** calls fn when the call ends; the function returned takes it off */
  onClose(fn: () => void): () => void;
}

function onEnd(end: AbortSignal | CallEnd, fn: () => void): () => void {
  if (!(end instanceof AbortSignal)) return end.onClose(fn);
  end.addEventListener("abort", fn, { once: true });
  return () => end.removeEventListener("abort", fn);
}

export class ResponseBudget {
  private held = 0;
  private unsettled = 0;
  private unsettledWrites = 0;
  private readonly queue: Array<{ kind: string; admit: (bytes: number) => void }> = [];
  private readonly sizes = new Map<string, number>();
  /** kinds whose first read is under way: the others of that kind wait to learn its size */
  private readonly probing = new Set<string>();

  constructor(readonly limit = RESPONSE_BUDGET_BYTES, readonly maxWaitMs = ADMIT_WAIT_MS) {}

  /** bytes reserved now (for tests and metrics) */
  get reserved(): number {
    return this.held;
  }

  /**
   * Waits, in arrival order, until a response of this kind fits (a small one does not wait
   * behind larger ones). Throws Canceled if the call ends first, ResourceExhausted if no
   * room came within maxWaitMs. Of a kind not seen yet one read goes first, alone of its
   * kind: a storm of new lists does not all start on a guess.
   */
  /**
   * A reservation made at once, when one of this kind may go now (as admit's first step
   * would), else undefined: then admit() waits. Spares a call that need not wait the
   * promise, and its stream the AbortSignal admit() listens to. The caller checks first
   * that its call is still open and its client reading.
   */
  admitNow(kind: string): Reservation | undefined {
    return this.mayGoNow(kind) ? new Reservation(this, kind, this.take(kind)) : undefined;
  }

  /** whether a read of this kind goes without waiting: nothing queued before it (a small one passes the queue), and room */
  private mayGoNow(kind: string): boolean {
    return (this.queue.length === 0 || this.guess(kind) <= SMALL_BYTES) && this.mayGo(kind);
  }

  /**
   * `end`: the call's end, as an AbortSignal or as its HTTP/2 stream (whose close is
   * listened to directly: an AbortSignal and its listener cost 2–3 µs, and with 64 clients
   * most point gets wait here for one of the MAX_UNSETTLED places).
   */
  async admit(kind: string, end: AbortSignal | CallEnd, notReading?: () => boolean): Promise<Reservation> {
    if (end instanceof AbortSignal ? end.aborted : end.closed) throw new ConnectError("the client cancelled the call", Code.Canceled);
    if (notReading?.()) throw notReadingError();
    let bytes: number;
    if (this.mayGoNow(kind)) {
      bytes = this.take(kind);
    } else {
      bytes = await new Promise<number>((resolve, reject) => {
        let unlisten = () => {};
        // the error is made only for a waiter still queued, and the listener goes once it is
        // admitted: left behind, it made a ConnectError for every admitted read when its stream closed
        const leave = (err: () => ConnectError) => {
          const i = this.queue.indexOf(waiter);
          if (i < 0) return;
          this.queue.splice(i, 1);
          clearTimeout(timer);
          unlisten();
          this.wake();
          reject(err());
        };
        const cancelled = () => leave(() => new ConnectError("the client cancelled the call", Code.Canceled));
        const waiter = {
          kind,
          admit: (n: number) => {
            clearTimeout(timer);
            unlisten();
            resolve(n);
          },
        };
        this.queue.push(waiter);
        const timer = this.maxWaitMs <= 0 ? undefined : setTimeout(() => leave(() => new ConnectError(
          `strata: too many large reads in flight (${mib(this.held)} MiB of responses not yet sent, ${mib(this.limit)} MiB allowed); retry later`,
          Code.ResourceExhausted,
        )), this.maxWaitMs);
        unlisten = onEnd(end, cancelled);
      });
    }
    // it waited while its client's stalled responses were reset: nothing read, its share back
    if (notReading?.()) {
      this.release(kind, bytes, false);
      throw notReadingError();
    }
    return new Reservation(this, kind, bytes);
  }

  /** @internal the response turned out `actual` bytes instead of `bytes` */
  settle(kind: string, bytes: number, actual: number): void {
    if (this.sizes.size >= KINDS) this.sizes.clear();
    if (!oneKey(kind)) this.sizes.set(kind, actual);
    this.probing.delete(kind);
    this.unsettle(kind);
    this.held += actual - bytes;
    this.wake();
  }

  /** @internal `settled`: whether settle() was called for it */
  release(kind: string, bytes: number, settled: boolean): void {
    this.held -= bytes;
    if (!settled) {
      this.unsettle(kind);
      // a first read that failed before its size was known: the next of its kind probes
      this.probing.delete(kind);
    }
    this.wake();
  }

  /** @internal part of a response went out */
  sent(bytes: number): void {
    this.held -= bytes;
    if (this.queue.length > 0) this.wake();
  }

  private guess(kind: string): number {
    if (oneKey(kind)) return ONE_KEY_BYTES;
    return Math.min(this.sizes.get(kind) ?? UNKNOWN_BYTES, this.limit);
  }

  /** whether the first read of `kind` is still to learn its size */
  private unknown(kind: string): boolean {
    return !oneKey(kind) && !this.sizes.has(kind);
  }

  private mayGo(kind: string): boolean {
    if (kind === WRITE_ONE_KEY ? this.unsettledWrites >= MAX_UNSETTLED_WRITES : this.unsettled >= MAX_UNSETTLED) return false;
    if (this.unknown(kind) && this.probing.has(kind)) return false;
    const guess = this.guess(kind);
    return this.held === 0 || this.held + guess <= (guess <= SMALL_BYTES ? 1.25 * this.limit : this.limit);
  }

  /** Reserves a read of `kind`; returns the bytes reserved. */
  private take(kind: string): number {
    const bytes = this.guess(kind);
    if (this.unknown(kind)) this.probing.add(kind);
    this.held += bytes;
    if (kind === WRITE_ONE_KEY) this.unsettledWrites++;
    else this.unsettled++;
    return bytes;
  }

  private unsettle(kind: string): void {
    if (kind === WRITE_ONE_KEY) this.unsettledWrites--;
    else this.unsettled--;
  }

  /** Admits the waiters that may go: in order, and small ones past a larger one that may not. */
  private wake(): void {
    let blocked = false;
    for (let i = 0; i < this.queue.length;) {
      const w = this.queue[i]!;
      // mayGo first: it fails at its first comparison while the unsettled places are taken,
      // which is every settle with many point gets waiting (the queue is walked each time)
      if (this.mayGo(w.kind) && (!blocked || this.guess(w.kind) <= SMALL_BYTES)) {
        this.queue.splice(i, 1);
        w.admit(this.take(w.kind));
      } else {
        blocked = true;
        i++;
      }
    }
  }
}

/** One admitted read's share of the budget, held until its response is sent. */
export class Reservation {
  private released = false;
  private settled = false;

  constructor(private readonly budget: ResponseBudget, private readonly kind: string, private bytes: number) {}

  /** The response is `actual` bytes: hold that much from now on. */
  settle(actual: number): void {
    if (this.released || this.settled) return;
    this.settled = true;
    this.budget.settle(this.kind, this.bytes, actual);
    this.bytes = actual;
  }

  /** Gives the bytes back as `stream` sends them, the rest when it closes (sent or dropped). */
  holdUntilSent(stream: H2Stream): void {
    stream.onSent((n) => {
      if (this.released) return;
      const part = Math.min(n, this.bytes);
      this.bytes -= part;
      this.budget.sent(part);
    });
    // a response dropped unsent holds its share until its bytes are collected
    stream.onClose(() => (this.bytes > 0 ? whenDroppedCollected(() => this.release()) : this.release()));
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.budget.release(this.kind, this.bytes, this.settled);
  }
}

const mib = (bytes: number) => Math.round(bytes / (1024 * 1024));

/**
 * A read from a client that does not read its responses: one of them was just reset after
 * --stalled-stream-timeout without moving. Refused rather than read into memory, so the
 * reads it queued behind the stalled ones do not take the budget from other clients.
 */
function notReadingError(): ConnectError {
  return new ConnectError(
    "strata: this connection does not read its responses (one was reset after --stalled-stream-timeout without moving); give window or read, then retry",
    Code.ResourceExhausted,
  );
}
const oneKey = (kind: string) => kind === ONE_KEY || kind === WRITE_ONE_KEY;

/** The budget's kind of a Range; undefined for a count (its answer is a few bytes). */
export function rangeKind(r: RangeRequest): string | undefined {
  if (r.countOnly) return undefined;
  // one key's answer is at most one value (up to max-request-bytes): budgeted too, or
  // thousands of reads of a large value from a client that does not read would not be
  if (r.rangeEnd.length === 0) return "one key";
  return `${Buffer.from(r.rangeEnd).toString("hex")} ${r.limit} ${r.keysOnly}`;
}

/** The budget's kind of a Put: one value when it returns the previous one, else none. */
export function putKind(r: PutRequest): string | undefined {
  return r.prevKv ? WRITE_ONE_KEY : undefined;
}

/** The budget's kind of a DeleteRange: the key-values it deletes when it returns them (prev_kv), else none. */
export function deleteKind(r: DeleteRangeRequest): string | undefined {
  if (!r.prevKv) return undefined;
  if (r.rangeEnd.length === 0) return WRITE_ONE_KEY;
  return `delete ${Buffer.from(r.rangeEnd).toString("hex")}`;
}

/**
 * The budget's kind of a Txn: undefined when neither branch returns key-values (compares
 * and writes only: kube-apiserver's creates and deletes), one key when each branch returns
 * at most one key (a write of one key: kube-apiserver's updates, the current object on a
 * failed compare), else a kind of its own by the reads it holds (a hash: a Txn may hold
 * max-txn-ops of them).
 */
export function txnKind(r: TxnRequest): string | undefined {
  const branches = [r.success, r.failure].map((ops) => ops.flatMap(opKinds));
  if (branches.every((kinds) => kinds.length === 0)) return undefined;
  if (branches.every((kinds) => kinds.length === 0 || (kinds.length === 1 && oneKey(kinds[0]!)))) {
    return [...r.success, ...r.failure].some(writes) ? WRITE_ONE_KEY : ONE_KEY;
  }
  const reads = branches.map((kinds) => kinds.join(",")).join(";");
  return `txn ${createHash("sha1").update(reads).digest("hex")}`;
}

function writes(op: RequestOp): boolean {
  const r = op.request;
  return r.case === "requestPut" || r.case === "requestDeleteRange" || (r.case === "requestTxn" && [...r.value.success, ...r.value.failure].some(writes));
}

function opKinds(op: RequestOp): string[] {
  switch (op.request.case) {
    case "requestRange":
      return [rangeKind(op.request.value)].filter((k) => k !== undefined);
    case "requestPut":
      return [putKind(op.request.value)].filter((k) => k !== undefined);
    case "requestDeleteRange":
      return [deleteKind(op.request.value)].filter((k) => k !== undefined);
    case "requestTxn": {
      // a nested Txn runs one of its branches too: count both, as its own answer may hold either
      const inner = op.request.value;
      return [...inner.success, ...inner.failure].flatMap(opKinds);
    }
    default:
      return [];
  }
}

/**
 * Unary requests whose answers may be large, and their kind in the budget. Every other
 * unary answer is small whatever the client asks: LeaseLeases (a lease ID each),
 * LeaseTimeToLive (the keys of one lease), MemberList and Status (one member), alarms,
 * HashKV, auth lists; Snapshot is a stream with its own flow control.
 */
export const BUDGETED_REQUESTS = new Map<DescMessage, (request: never) => string | undefined>([
  [RangeRequestSchema, rangeKind],
  [TxnRequestSchema, txnKind],
  [PutRequestSchema, putKind],
  [DeleteRangeRequestSchema, deleteKind],
]);
