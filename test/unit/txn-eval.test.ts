// Txn evaluation (Apply in src/mvcc/kv.ts) over an in-memory WriteTx: compares by every
// target and result, missing keys, ranges of keys, nested txns evaluated on the state
// before the txn, refusals before any write, and the revisions a transaction writes at.
import { beforeEach, describe, expect, test } from "bun:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { CompareSchema, PutRequestSchema, type RequestOpSchema, TxnRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import type { WriteTx } from "../../src/mvcc/backend.ts";
import { compareBytes, inRange } from "../../src/mvcc/keyrange.ts";
import { Apply, isReadOnly, txnKeys } from "../../src/mvcc/kv.ts";
import type { KeyRange, KeyValue, LeaseRecord, Rev } from "../../src/mvcc/types.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** the live state only, in memory: enough for evaluation, which reads the latest state */
class MemoryTx implements WriteTx {
  readonly kvs = new Map<string, KeyValue>();
  readonly leases = new Map<Rev, LeaseRecord>();
  /** every write, in order: put key@rev / del key@rev / rev N */
  readonly writes: string[] = [];
  constructor(public revision: Rev = 10n, public compactRevision: Rev = 4n) {}
  async range(r: KeyRange, opts: { revision?: Rev; limit?: number } = {}): Promise<KeyValue[]> {
    if (opts.revision !== undefined) throw new Error("MemoryTx reads only the latest state");
    const out = [...this.kvs.values()].filter((kv) => inRange(r, kv.key)).sort((a, b) => compareBytes(a.key, b.key));
    return opts.limit ? out.slice(0, opts.limit) : out;
  }
  async count(r: KeyRange): Promise<bigint> {
    return BigInt((await this.range(r)).length);
  }
  async put(kv: KeyValue): Promise<void> {
    this.kvs.set(dec(kv.key), kv);
    this.writes.push(`put ${dec(kv.key)}@${kv.modRevision}`);
  }
  async delete(prev: KeyValue, rev: Rev): Promise<void> {
    this.kvs.delete(dec(prev.key));
    this.writes.push(`del ${dec(prev.key)}@${rev}`);
  }
  async leaseExists(id: Rev): Promise<boolean> {
    return this.leases.has(id);
  }
  async leaseExpired(id: Rev, now: number): Promise<boolean> {
    const l = this.leases.get(id);
    return !!l && l.expiresAt <= now;
  }
  async leaseInsert(l: LeaseRecord): Promise<void> {
    this.leases.set(l.id, l);
  }
  async leaseDelete(id: Rev): Promise<void> {
    this.leases.delete(id);
  }
  async leaseKeys(id: Rev): Promise<KeyValue[]> {
    return [...this.kvs.values()].filter((kv) => kv.lease === id);
  }
  async forget(key: Uint8Array): Promise<void> {
    this.kvs.delete(dec(key));
  }
  async setRevision(rev: Rev): Promise<void> {
    this.writes.push(`rev ${rev}`);
  }
  async setCompactRevision(rev: Rev): Promise<void> {
    this.compactRevision = rev;
  }
}

type Cmp = MessageInitShape<typeof CompareSchema>;
type Op = MessageInitShape<typeof RequestOpSchema>;
const RESULT = { equal: 0, greater: 1, less: 2, notEqual: 3 };
const cmp = (key: string, target: "version" | "createRevision" | "modRevision" | "lease", result: number, value: bigint, rangeEnd?: string): Cmp => ({
  key: enc(key), rangeEnd: rangeEnd === undefined ? undefined : enc(rangeEnd), result,
  target: { version: 0, createRevision: 1, modRevision: 2, lease: 4 }[target],
  targetUnion: { case: target, value },
});
const valueCmp = (key: string, result: number, value: string, rangeEnd?: string): Cmp => ({
  key: enc(key), rangeEnd: rangeEnd === undefined ? undefined : enc(rangeEnd), result, target: 3, targetUnion: { case: "value", value: enc(value) },
});
const putOp = (key: string, value: string, extra: Partial<{ lease: bigint; ignoreValue: boolean }> = {}): Op => ({ request: { case: "requestPut", value: { key: enc(key), value: enc(value), ...extra } } });
const getOp = (key: string, revision = 0n): Op => ({ request: { case: "requestRange", value: { key: enc(key), revision } } });
const delOp = (key: string): Op => ({ request: { case: "requestDeleteRange", value: { key: enc(key) } } });
const txnOp = (compare: Cmp[], success: Op[], failure: Op[] = []): Op => ({ request: { case: "requestTxn", value: { compare, success, failure } } });
const txn = (compare: Cmp[], success: Op[], failure: Op[] = []) => create(TxnRequestSchema, { compare, success, failure });

let tx: MemoryTx;
let a: Apply;
/** runs a txn as the store does: evaluate, then persist the revision */
async function run(compare: Cmp[], success: Op[], failure: Op[] = []) {
  const out = await a.txn(txn(compare, success, failure));
  out.header = { revision: await a.finish() };
  return out;
}
const succeeded = async (...c: Cmp[]) => (await new Apply(tx).txn(txn(c, []))).succeeded;

beforeEach(() => {
  tx = new MemoryTx();
  // "k": created at 3, modified at 8, version 4, value "v", lease 7
  tx.kvs.set("k", { key: enc("k"), value: enc("v"), createRevision: 3n, modRevision: 8n, version: 4n, lease: 7n });
  tx.kvs.set("m", { key: enc("m"), value: enc("w"), createRevision: 5n, modRevision: 5n, version: 1n, lease: 0n });
  tx.leases.set(7n, { id: 7n, ttl: 10n, expiresAt: 0 });
  a = new Apply(tx);
});

describe("compares", () => {
  test("every target against an existing key, with every result", async () => {
    expect(await succeeded(cmp("k", "version", RESULT.equal, 4n))).toBe(true);
    expect(await succeeded(cmp("k", "version", RESULT.greater, 3n))).toBe(true);
    expect(await succeeded(cmp("k", "version", RESULT.greater, 4n))).toBe(false);
    expect(await succeeded(cmp("k", "createRevision", RESULT.less, 4n))).toBe(true);
    expect(await succeeded(cmp("k", "createRevision", RESULT.less, 3n))).toBe(false);
    expect(await succeeded(cmp("k", "modRevision", RESULT.notEqual, 8n))).toBe(false);
    expect(await succeeded(cmp("k", "modRevision", RESULT.notEqual, 9n))).toBe(true);
    expect(await succeeded(cmp("k", "lease", RESULT.equal, 7n))).toBe(true);
    expect(await succeeded(valueCmp("k", RESULT.equal, "v"))).toBe(true);
    expect(await succeeded(valueCmp("k", RESULT.greater, "u"))).toBe(true);
    expect(await succeeded(valueCmp("k", RESULT.less, "u"))).toBe(false);
    expect(await succeeded(valueCmp("k", RESULT.notEqual, "v"))).toBe(false);
  });

  test("a missing key has version, revisions and lease 0, and no value to compare", async () => {
    expect(await succeeded(cmp("nope", "version", RESULT.equal, 0n))).toBe(true);
    expect(await succeeded(cmp("nope", "createRevision", RESULT.equal, 0n))).toBe(true);
    expect(await succeeded(cmp("nope", "modRevision", RESULT.less, 1n))).toBe(true);
    expect(await succeeded(cmp("nope", "lease", RESULT.equal, 0n))).toBe(true);
    expect(await succeeded(valueCmp("nope", RESULT.equal, ""))).toBe(false);
    expect(await succeeded(valueCmp("nope", RESULT.notEqual, "x"))).toBe(false);
  });

  test("a compare over a range holds only if it holds for every key in it", async () => {
    expect(await succeeded(cmp("a", "createRevision", RESULT.greater, 2n, "z"))).toBe(true);
    expect(await succeeded(cmp("a", "createRevision", RESULT.greater, 3n, "z"))).toBe(false);
    expect(await succeeded(valueCmp("k", RESULT.equal, "v", "l"))).toBe(true);
    // an empty range: version compares as a missing key's, a value compare fails
    expect(await succeeded(cmp("x", "version", RESULT.equal, 0n, "y"))).toBe(true);
    expect(await succeeded(valueCmp("x", RESULT.equal, "", "y"))).toBe(false);
  });

  test("all compares must hold: the first failing one picks the failure branch", async () => {
    const out = await run([cmp("k", "version", RESULT.equal, 4n), valueCmp("m", RESULT.equal, "other")], [putOp("s", "1")], [putOp("f", "1")]);
    expect(out.succeeded).toBe(false);
    expect(tx.writes).toEqual(["put f@11", "rev 11"]);
  });
});

describe("applying a txn", () => {
  test("all writes at one revision, the next; reads inside see earlier writes and report it", async () => {
    const out = await run([], [putOp("n", "1"), getOp("n"), delOp("m"), putOp("k", "v2")]);
    expect(out.header.revision).toBe(11n);
    expect(tx.writes).toEqual(["put n@11", "del m@11", "put k@11", "rev 11"]);
    const read = out.responses[1]!.response;
    expect(read.case === "responseRange" && [read.value.kvs.map((k) => dec(k.value)), read.value.header.revision]).toEqual([["1"], 11n]);
    // a changed key keeps its creation and counts its versions; a new one starts at 1
    expect(tx.kvs.get("k")).toMatchObject({ createRevision: 3n, modRevision: 11n, version: 5n });
    expect(tx.kvs.get("n")).toMatchObject({ createRevision: 11n, version: 1n });
    expect(a.events.map((e) => `${e.type}:${dec(e.kv.key)}<${e.prevKv ? dec(e.prevKv.value) : "-"}`)).toEqual(["0:n<-", "1:m<w", "0:k<v"]);
  });

  test("nested txns' compares see the state before the whole txn; nested headers are empty", async () => {
    const out = await run([], [putOp("k", "changed"), txnOp([valueCmp("k", RESULT.equal, "v")], [putOp("saw", "before")], [putOp("saw", "after")])]);
    expect(dec(tx.kvs.get("saw")!.value)).toBe("before");
    const nested = out.responses[1]!.response;
    expect(nested.case === "responseTxn" && [nested.value.succeeded, nested.value.header.revision]).toEqual([true, 0n]);
  });

  test("a read-only or empty txn writes nothing and keeps the revision", async () => {
    const out = await run([cmp("k", "version", RESULT.equal, 4n)], [getOp("k")]);
    expect([out.succeeded, out.header.revision]).toEqual([true, 10n]);
    expect(tx.writes).toEqual([]);
    expect(a.changed).toBe(false);
  });
});

describe("refusals come before any write", () => {
  const refused = async (compare: Cmp[], success: Op[], failure: Op[] = []) => {
    const msg = await run(compare, success, failure).then(() => "no error", (e: Error) => e.message);
    return [msg, tx.writes];
  };

  test("a put with a lease that does not exist, also in a nested txn", async () => {
    expect(await refused([], [putOp("a", "1"), putOp("b", "1", { lease: 99n })])).toEqual(["etcdserver: requested lease not found", []]);
    expect(await refused([], [putOp("a", "1"), txnOp([], [putOp("b", "1", { lease: 99n })])])).toEqual(["etcdserver: requested lease not found", []]);
    // on the branch not taken it does not matter
    expect(await refused([valueCmp("k", RESULT.equal, "no")], [putOp("b", "1", { lease: 99n })], [putOp("c", "1", { lease: 7n })])).toEqual(["no error", ["put c@11", "rev 11"]]);
  });

  test("ignore_value on a missing key", async () => {
    expect(await refused([], [putOp("a", "1"), putOp("nope", "", { ignoreValue: true })])).toEqual(["etcdserver: key not found", []]);
  });

  test("a read at a future or compacted revision", async () => {
    expect(await refused([], [putOp("a", "1"), getOp("k", 11n)])).toEqual(["etcdserver: mvcc: required revision is a future revision", []]);
    expect(await refused([], [putOp("a", "1"), getOp("k", 3n)])).toEqual(["etcdserver: mvcc: required revision has been compacted", []]);
  });
});

describe("revisions of a transaction", () => {
  test("advancing raises the base before writing; a stride numbers writes in the backend's residue", async () => {
    const stride = (after: Rev) => {
      const next = after + 1n;
      return next + ((1n - (next % 3n)) % 3n + 3n) % 3n; // slot 1 of 3
    };
    const s = new Apply(tx, stride);
    await s.advanceTo(20n);
    expect([s.beginRevision, s.writeRevision, s.endRevision]).toEqual([20n, 22n, 20n]);
    await s.put(create(PutRequestSchema, { key: enc("x"), value: enc("1") }));
    expect(s.endRevision).toBe(22n);
    // once written, the base no longer moves
    await s.advanceTo(30n);
    expect(await s.finish()).toBe(22n);
    expect(tx.writes).toEqual(["rev 20", "put x@22", "rev 22"]);
  });
});

describe("txn helpers", () => {
  test("txnKeys lists the single keys compared, read or written, nested included", () => {
    const r = txn([valueCmp("c", 0, "x"), cmp("r", "version", 0, 0n, "s")], [putOp("p", "1"), getOp("g"), txnOp([], [delOp("d")])], [putOp("f", "1")]);
    expect(txnKeys(r).map(dec)).toEqual(["c", "p", "g", "d", "f"]);
  });

  test("isReadOnly: only ranges on both branches (a nested txn counts as a write)", () => {
    expect(isReadOnly(txn([], [getOp("a")], [getOp("b")]))).toBe(true);
    expect(isReadOnly(txn([], [getOp("a")], [putOp("b", "1")]))).toBe(false);
    expect(isReadOnly(txn([], [txnOp([], [getOp("a")])]))).toBe(false);
  });
});
