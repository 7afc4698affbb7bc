// The response budget: reads wait in order while responses read and not yet sent fill it.
import { expect, test } from "bun:test";
import { Code } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { deleteKind, putKind, ResponseBudget, txnKind } from "../../src/api/response-budget.ts";
import { DeleteRangeRequestSchema, PutRequestSchema, RangeRequestSchema, type RequestOp, TxnRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";

const MiB = 1024 * 1024;
const open = () => new AbortController().signal;
const settled = async (p: Promise<unknown>) => {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  await new Promise((r) => setTimeout(r, 0));
  return done;
};

test("reads wait while the budget is full and go in arrival order as it empties", async () => {
  const budget = new ResponseBudget(20 * MiB);
  const a = await budget.admit("list", open());
  a.settle(15 * MiB);
  const b = budget.admit("list", open()); // guessed from a: 15 MiB, does not fit
  const c = budget.admit("other", open()); // would fit (8 MiB guess) but b came first
  expect(await settled(b)).toBe(false);
  expect(await settled(c)).toBe(false);
  a.release();
  expect(await settled(b)).toBe(true);
  expect(await settled(c)).toBe(false);
  (await b).release();
  expect(await settled(c)).toBe(true);
  (await c).release();
  expect(budget.reserved).toBe(0);
});

test("a client that does not read is refused at once, and a read of it that waited is refused when its turn comes, its share given back", async () => {
  const budget = new ResponseBudget(20 * MiB);
  let notReading = false;
  const a = await budget.admit("list", open());
  a.settle(15 * MiB);
  const waiting = budget.admit("list", open(), () => notReading);
  const other = budget.admit("list", open());
  expect(await settled(waiting)).toBe(false);
  // its stalled responses were reset: what it queued is refused when admitted, and the next read in line goes
  notReading = true;
  a.release();
  const refused = await waiting.then(() => undefined, (e: { code: Code; message: string }) => e);
  expect(refused?.code).toBe(Code.ResourceExhausted);
  expect(refused?.message).toContain("does not read its responses");
  expect(await settled(other)).toBe(true);
  (await other).release();
  expect(budget.reserved).toBe(0);
  // and a new read of it is refused before it waits
  const again = await budget.admit("list", open(), () => notReading).then(() => undefined, (e: { code: Code }) => e);
  expect(again?.code).toBe(Code.ResourceExhausted);
  expect(budget.reserved).toBe(0);
});

test("a response larger than the whole budget goes alone", async () => {
  const budget = new ResponseBudget(10 * MiB);
  const a = await budget.admit("huge", open());
  a.settle(50 * MiB);
  const b = budget.admit("huge", open());
  expect(await settled(b)).toBe(false);
  a.release();
  expect(await settled(b)).toBe(true);
  expect(budget.reserved).toBe(10 * MiB); // its guess is capped at the budget
});

test("a call that ends while it waits leaves the queue", async () => {
  const budget = new ResponseBudget(10 * MiB);
  const a = await budget.admit("x", open());
  a.settle(10 * MiB);
  const gone = new AbortController();
  const b = budget.admit("x", gone.signal);
  const c = budget.admit("y", open());
  gone.abort();
  expect(await b.catch((e: { rawMessage: string }) => e.rawMessage)).toBe("the client cancelled the call");
  a.release();
  expect(await settled(c)).toBe(true);
});

test("a read that finds no room within the wait is refused with ResourceExhausted, and leaves the queue", async () => {
  const budget = new ResponseBudget(10 * MiB, 100);
  const a = await budget.admit("x", open());
  a.settle(10 * MiB);
  const b = budget.admit("x", open());
  const err = await b.catch((e: { code: number; rawMessage: string }) => e);
  expect((err as { code: number }).code).toBe(Code.ResourceExhausted);
  expect((err as { rawMessage: string }).rawMessage).toContain("too many large reads in flight (10 MiB of responses not yet sent, 10 MiB allowed)");
  a.release();
  expect(budget.reserved).toBe(0);
  // the queue is empty again: the next read goes at once
  expect(await settled(budget.admit("x", open()))).toBe(true);
});

test("of a kind not seen yet one read goes first; the others wait for its size instead of starting on a guess", async () => {
  const budget = new ResponseBudget(64 * MiB);
  const first = await budget.admit("new list", open());
  const second = budget.admit("new list", open());
  const other = budget.admit("other list", open());
  expect(await settled(second)).toBe(false);
  // a later kind waits behind, in arrival order
  expect(await settled(other)).toBe(false);
  first.settle(30 * MiB);
  expect(await settled(second)).toBe(true);
  expect(await settled(other)).toBe(false); // 60 MiB held, the 8 MiB guess does not fit
  expect(budget.reserved).toBe(60 * MiB);
});

test("a small read does not wait behind a large one that does not fit", async () => {
  const budget = new ResponseBudget(20 * MiB);
  (await budget.admit("one key", open())).settle(1000);
  const a = await budget.admit("list", open());
  a.settle(15 * MiB);
  const large = budget.admit("list", open()); // 15 MiB more does not fit
  const small = budget.admit("one key", open());
  expect(await settled(small)).toBe(true);
  expect(await settled(large)).toBe(false);
});

test("at most 16 reads go on a guess at once: the rest wait until one learns its size", async () => {
  const budget = new ResponseBudget(1024 * MiB);
  (await budget.admit("one key", open())).settle(100);
  const first = await Promise.all(Array.from({ length: 16 }, () => budget.admit("one key", open())));
  const next = budget.admit("one key", open());
  expect(await settled(next)).toBe(false);
  first[0]!.settle(100);
  expect(await settled(next)).toBe(true);
});

test("a read admitted after waiting leaves nothing listening on its call's signal", async () => {
  const budget = new ResponseBudget(10 * MiB);
  const a = await budget.admit("x", open());
  a.settle(10 * MiB);
  // a real signal, its listeners counted as they come and go
  const signal = new AbortController().signal;
  let listening = 0;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = ((...args: Parameters<AbortSignal["addEventListener"]>) => (listening++, add(...args))) as never;
  signal.removeEventListener = ((...args: Parameters<AbortSignal["removeEventListener"]>) => (listening--, remove(...args))) as never;
  const b = budget.admit("x", signal);
  expect(await settled(b)).toBe(false);
  expect(listening).toBe(1);
  a.release();
  (await b).release();
  // left behind, it would run (and build an error) when the call's stream closed
  expect(listening).toBe(0);
});

test("writes of one key (kube-apiserver's updates) are not held by the 16 reads on a guess: up to 128 go at once", async () => {
  const budget = new ResponseBudget(1024 * MiB);
  const reads = await Promise.all(Array.from({ length: 16 }, () => budget.admit("one key", open())));
  const writes = await Promise.all(Array.from({ length: 128 }, () => budget.admit("write one key", open())));
  const [read, write] = [budget.admit("one key", open()), budget.admit("write one key", open())];
  expect([await settled(read), await settled(write)]).toEqual([false, false]);
  writes[0]!.settle(100);
  expect([await settled(read), await settled(write)]).toEqual([false, true]);
  reads[0]!.settle(100);
  expect(await settled(read)).toBe(true);
});

test("a Txn's kind: none for writes, a write of one key for kube-apiserver's updates, its own for lists; prev_kv counts", () => {
  const key = (k: string) => Buffer.from(k);
  const get = (k: string): RequestOp["request"] => ({ case: "requestRange", value: create(RangeRequestSchema, { key: key(k) }) });
  const list = (k: string, end: string): RequestOp["request"] => ({ case: "requestRange", value: create(RangeRequestSchema, { key: key(k), rangeEnd: key(end) }) });
  const put = (k: string): RequestOp["request"] => ({ case: "requestPut", value: create(PutRequestSchema, { key: key(k), value: key("v") }) });
  const txn = (success: RequestOp["request"][], failure: RequestOp["request"][] = []) =>
    create(TxnRequestSchema, { success: success.map((request) => ({ request })), failure: failure.map((request) => ({ request })) });
  // kube-apiserver's create (put if absent) and update (put, else read the object)
  expect(txnKind(txn([put("/registry/pods/a")]))).toBeUndefined();
  expect(txnKind(txn([put("/registry/pods/a")], [get("/registry/pods/a")]))).toBe("write one key");
  // a Txn that only reads one key is a point read
  expect(txnKind(txn([get("a")], [get("b")]))).toBe("one key");
  // a count returns no key-values
  expect(txnKind(txn([{ case: "requestRange", value: create(RangeRequestSchema, { key: key("a"), rangeEnd: key("b"), countOnly: true }) }]))).toBeUndefined();
  // lists, or several keys in one branch, are a kind of their own, the same for the same reads
  const lists = txnKind(txn([list("a", "b"), list("a", "b")]));
  expect(lists).toStartWith("txn ");
  expect(txnKind(txn([list("a", "b"), list("a", "b")]))).toBe(lists!);
  expect(txnKind(txn([list("a", "c")]))).not.toBe(lists!);
  expect(txnKind(txn([get("a"), get("b")]))).toStartWith("txn ");
  // reads inside a nested Txn count
  expect(txnKind(txn([{ case: "requestTxn", value: txn([list("a", "b")]) }]))).toStartWith("txn ");
  expect(putKind(create(PutRequestSchema, { key: key("a"), prevKv: true }))).toBe("write one key");
  expect(putKind(create(PutRequestSchema, { key: key("a") }))).toBeUndefined();
  expect(deleteKind(create(DeleteRangeRequestSchema, { key: key("a"), rangeEnd: key("b"), prevKv: true }))).toStartWith("delete ");
  expect(deleteKind(create(DeleteRangeRequestSchema, { key: key("a"), rangeEnd: key("b") }))).toBeUndefined();
});

/** a call's end as an HTTP/2 stream gives it (closed, onClose with its remover) */
class Call {
  closed = false;
  readonly listeners = new Set<() => void>();
  onClose(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  close(): void {
    this.closed = true;
    for (const fn of this.listeners) fn();
  }
}

test("a read waiting on its stream's close: refused as Canceled when it closes, its listener gone once admitted", async () => {
  const budget = new ResponseBudget(20 * MiB);
  const a = await budget.admit("list", new Call());
  a.settle(15 * MiB);
  const leaving = new Call(), staying = new Call();
  const left = budget.admit("list", leaving);
  const stays = budget.admit("list", staying);
  expect(await settled(left)).toBe(false);
  expect(leaving.listeners.size).toBe(1);
  leaving.close();
  expect(await left.then(() => undefined, (e: { code: Code }) => e.code)).toBe(Code.Canceled);
  a.release();
  expect(await settled(stays)).toBe(true);
  expect(staying.listeners.size).toBe(0);
  (await stays).release();
  expect(budget.reserved).toBe(0);
  // a call already ended is refused before it waits
  const ended = new Call();
  ended.close();
  expect(await budget.admit("list", ended).then(() => undefined, (e: { code: Code }) => e.code)).toBe(Code.Canceled);
});
