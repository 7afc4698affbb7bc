// RangeStream's chunks over any keyspace (src/keyspace/range-stream.ts), on a keyspace made
// of a sorted array: the chunks together are the Range's answer (key-values, more, count,
// header revision), every page is read at the first one's revision, only the last chunk
// ends the answer, pages grow and shrink toward the chunk size; and the chunk's frame
// (src/api/range-stream-frame.ts) is byte for byte protobuf-es's.
import { describe, expect, test } from "bun:test";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type RangeRequest, RangeRequestSchema, RangeStreamResponseSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { rangeStreamFrame } from "../../src/api/range-stream-frame.ts";
import { checkRangeStream } from "../../src/api/checks.ts";
import type { Keyspace, RangeChunk, RangeOptions } from "../../src/keyspace/contract.ts";
import { FIRST_PAGE, MAX_PAGE, nextPageKeys, streamRange } from "../../src/keyspace/range-stream.ts";
import { encodeKvs, scanKvs } from "../../src/mvcc/kv-encoding.ts";
import { compareBytes, toKeyRange } from "../../src/mvcc/keyrange.ts";
import { finishRange } from "../../src/mvcc/range.ts";
import type { KeyValue } from "../../src/mvcc/types.ts";
import { parseSelection } from "../../src/selectors/index.ts";
import { asJson } from "../support/k8s-objects.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

// 1000 pods of growing size; every 7th is "web"
const kvs: KeyValue[] = [];
for (let i = 0; i < 1000; i++) {
  const name = `p${String(i).padStart(4, "0")}`;
  const o = { apiVersion: "v1", kind: "Pod", name, namespace: "a", labels: { app: i % 7 ? "db" : "web", pad: "x".repeat(i) } };
  kvs.push({ key: enc(`/registry/pods/a/${name}`), value: asJson(o), createRevision: BigInt(2000 - i), modRevision: BigInt(i + 1), version: 1n, lease: 0n });
}

/** a keyspace answering from the array as a Range would (encoded when asked); it records what it was asked */
function member(asked: Array<{ r: RangeRequest; encode: boolean }>): Keyspace {
  return {
    range: async (r: RangeRequest, o?: RangeOptions) => {
      const encode = o?.encodedKvs ?? false;
      asked.push({ r, encode });
      const range = toKeyRange(r.key, r.rangeEnd);
      const inRange = kvs.filter((kv) => compareBytes(kv.key, range.start) >= 0 && (range.end === undefined || compareBytes(kv.key, range.end) < 0));
      const out = finishRange(r, { kvs: inRange, count: BigInt(inRange.length), revision: 5000n });
      return encode ? { ...out, kvs: [], encodedKvs: encodeKvs(out.kvs) } : out;
    },
  } as unknown as Keyspace;
}

const req = (init: MessageInitShape<typeof RangeRequestSchema> = {}) =>
  create(RangeRequestSchema, { key: enc("/registry/pods/"), rangeEnd: enc("/registry/pods0"), ...init });
const options = { deadline: () => ({ start: Date.now() }), chunkBytes: 64 * 1024, encodedKvs: false };

async function collect(r: RangeRequest, o = options, selector = "", asked: Array<{ r: RangeRequest; encode: boolean }> = []) {
  const chunks: RangeChunk[] = [];
  for await (const c of streamRange(member(asked), r, parseSelection(selector, ""), o)) chunks.push(c);
  const all = chunks.flatMap((c) => (c.encodedKvs ? decodeKvs(c.encodedKvs) : c.kvs));
  return { chunks, keys: all.map((kv) => dec(kv.key)), kvs: all, end: chunks.at(-1)!.end!, asked };
}

/** the kvs field back to key-values, through the generated decoder */
function decodeKvs(bytes: Uint8Array): KeyValue[] {
  const frame = rangeStreamFrame({ kvs: [], encodedKvs: bytes }, { clusterId: 0n, memberId: 0n });
  return fromFrame(frame).rangeResponse!.kvs.map(({ key, createRevision, modRevision, version, value, lease }) => ({ key, createRevision, modRevision, version, value, lease }));
}

function fromFrame(pieces: Uint8Array[]) {
  const frame = Buffer.concat(pieces);
  expect(frame.readUInt32BE(1)).toBe(frame.length - 5);
  return fromBinary(RangeStreamResponseSchema, frame.subarray(5));
}

const allKeys = kvs.map((kv) => dec(kv.key));

describe("streamRange", () => {
  test("the chunks together are the whole range, read at the first page's revision; only the last ends it", async () => {
    const { chunks, keys, end, asked } = await collect(req());
    expect(keys).toEqual(allKeys);
    expect(end).toEqual({ revision: 5000n, more: false, count: 1000n });
    expect(chunks.length).toBeGreaterThan(3);
    expect(chunks.slice(0, -1).every((c) => c.end === undefined && c.kvs.length > 0)).toBe(true);
    expect(asked.map((a) => a.r.revision)).toEqual([0n, ...asked.slice(1).map(() => 5000n)]);
    expect(asked[0]!.r.limit).toBe(BigInt(FIRST_PAGE));
    // pages grow toward the chunk size, and shrink as the values grow
    const sizes = chunks.map((c) => c.kvs.reduce((n, kv) => n + kv.key.length + kv.value.length, 0));
    expect(Math.max(...sizes)).toBeLessThan(2 * options.chunkBytes);
    expect(Math.max(...sizes.slice(3, -1))).toBeGreaterThan(options.chunkBytes / 2);
  });

  test("an asked revision is kept; keys only; serializable passed on", async () => {
    const { keys, kvs: got, asked, end } = await collect(req({ revision: 42n, keysOnly: true, serializable: true }));
    expect(keys).toEqual(allKeys);
    expect(got.every((kv) => kv.value.length === 0)).toBe(true);
    expect(asked.every((a) => a.r.revision === 42n && a.r.keysOnly && a.r.serializable)).toBe(true);
    // the header reports the latest revision, as a Range at an older one does
    expect(end.revision).toBe(5000n);
  });

  test("limit: more and count as Range answers them, at a page boundary and inside one", async () => {
    for (const limit of [1, 5, FIRST_PAGE, FIRST_PAGE + 1, 999, 1000, 1001, 5000]) {
      const { keys, end } = await collect(req({ limit: BigInt(limit) }));
      const plain = await member([]).range(req({ limit: BigInt(limit) }));
      expect({ limit, keys, more: end.more, count: end.count }).toEqual({
        limit,
        keys: plain.kvs.map((kv) => dec(kv.key)),
        more: plain.more,
        count: plain.count,
      });
    }
  });

  test("encoded pages: the same key-values, where pages start found in the encoded bytes", async () => {
    const plain = await collect(req());
    const encoded = await collect(req(), { ...options, encodedKvs: true });
    expect(encoded.asked.every((a) => a.encode)).toBe(true);
    expect(encoded.chunks.every((c) => c.encodedKvs !== undefined)).toBe(true);
    expect(encoded.kvs).toEqual(plain.kvs);
    expect(encoded.end).toEqual(plain.end);
  });

  test("one key, a range that holds none", async () => {
    const one = await collect(req({ key: enc("/registry/pods/a/p0005"), rangeEnd: new Uint8Array(0) }));
    expect([one.chunks.length, one.keys, one.end]).toEqual([1, ["/registry/pods/a/p0005"], { revision: 5000n, more: false, count: 1n }]);
    const none = await collect(req({ key: enc("/nothing/"), rangeEnd: enc("/nothing0") }));
    expect([none.chunks.length, none.keys, none.end]).toEqual([1, [], { revision: 5000n, more: false, count: 0n }]);
  });

  test("a target without an order: each chunk sorted by it, ascending, as etcd sorts each; no key lost or repeated", async () => {
    const { chunks, keys } = await collect(req({ sortTarget: 2 }));
    expect([...keys].sort()).toEqual(allKeys);
    for (const c of chunks) {
      const revs = c.kvs.map((kv) => kv.createRevision);
      expect(revs).toEqual([...revs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    }
  });

  test("selectors: matches only; limit, more and count over matches; values read even for keys only", async () => {
    const web = kvs.filter((_, i) => i % 7 === 0).map((kv) => dec(kv.key));
    const all = await collect(req(), options, "app=web");
    expect([all.keys, all.end]).toEqual([web, { revision: 5000n, more: false, count: BigInt(web.length) }]);
    const limited = await collect(req({ limit: 20n, keysOnly: true }), options, "app=web");
    expect([limited.keys, limited.end.more, limited.end.count]).toEqual([web.slice(0, 20), true, BigInt(web.length)]);
    expect(limited.kvs.every((kv) => kv.value.length === 0)).toBe(true);
    expect(limited.asked.every((a) => !a.r.keysOnly && a.r.labelSelector === "" && !a.encode)).toBe(true);
    const exact = await collect(req({ limit: BigInt(web.length) }), options, "app=web");
    expect([exact.keys.length, exact.end.more]).toEqual([web.length, false]);
  });

  test("nothing is read before it is asked for", async () => {
    const asked: Array<{ r: RangeRequest; encode: boolean }> = [];
    const it = streamRange(member(asked), req(), undefined, options);
    expect(asked.length).toBe(0);
    await it.next();
    expect(asked.length).toBe(1);
    await it.next();
    expect(asked.length).toBe(2);
    await it.return(undefined);
  });
});

describe("nextPageKeys", () => {
  test("toward the target, at most doubling, at least one, at most MAX_PAGE", () => {
    expect(nextPageKeys(10, 10, 1000, 1_000_000)).toBe(20);
    expect(nextPageKeys(100, 100, 200_000, 100_000)).toBe(50);
    expect(nextPageKeys(100, 100, 100_000_000, 100_000)).toBe(1);
    expect(nextPageKeys(8000, 8000, 8000, 1_000_000)).toBe(MAX_PAGE);
    // a short last page says nothing about size beyond its keys
    expect(nextPageKeys(100, 0, 0, 1000)).toBe(200);
  });
});

describe("scanKvs", () => {
  test("count and last key of encoded key-values", () => {
    expect(scanKvs(new Uint8Array(0))).toEqual({ count: 0, lastKey: undefined });
    const some = kvs.slice(0, 300);
    const { count, lastKey } = scanKvs(encodeKvs(some));
    expect([count, dec(lastKey!)]).toEqual([300, dec(some[299]!.key)]);
    expect(() => scanKvs(encodeKvs(some).subarray(0, 100))).toThrow();
  });
});

describe("rangeStreamFrame", () => {
  const id = { clusterId: 0xfedcba9876543210n, memberId: 7n };
  const cases: Array<[string, RangeChunk]> = [
    ["a middle chunk", { kvs: kvs.slice(0, 3) }],
    ["an empty last chunk", { kvs: [], end: { revision: 9n, more: false, count: 0n } }],
    ["a last chunk with more", { kvs: kvs.slice(5, 9), end: { revision: 2n ** 40n, more: true, count: 1000n } }],
    ["a large value", { kvs: [{ ...kvs[0]!, value: new Uint8Array(3_000_000).fill(1) }] }],
  ];
  for (const [name, chunk] of cases) {
    const want = toBinary(RangeStreamResponseSchema, create(RangeStreamResponseSchema, {
      rangeResponse: {
        kvs: chunk.kvs,
        ...(chunk.end && { header: { ...id, revision: chunk.end.revision, raftTerm: 2n }, more: chunk.end.more, count: chunk.end.count }),
      },
    }));
    const check = (pieces: Uint8Array[]) => {
      const frame = Buffer.concat(pieces);
      expect(frame[0]).toBe(0);
      expect(frame.readUInt32BE(1)).toBe(want.length);
      expect(frame.subarray(5).equals(Buffer.from(want))).toBe(true);
    };
    test(name, () => check(rangeStreamFrame(chunk, id)));
    test(`${name}, key-values encoded beforehand`, () => check(rangeStreamFrame({ ...chunk, kvs: [], encodedKvs: encodeKvs(chunk.kvs) }, id)));
  }
});

describe("checkRangeStream", () => {
  const refused = (init: MessageInitShape<typeof RangeRequestSchema>) => {
    try {
      checkRangeStream(req(init));
      return "accepted";
    } catch (err) {
      return `${(err as { code: string }).code}: ${(err as Error).message}`;
    }
  };
  test("etcd's refusals, in etcd's order", () => {
    expect(refused({})).toBe("accepted");
    expect(refused({ sortOrder: 1 })).toBe("accepted");
    expect(refused({ sortTarget: 3 })).toBe("accepted");
    expect(refused({ key: new Uint8Array(0), sortOrder: 2 })).toBe("InvalidArgument: etcdserver: key is not provided");
    expect(refused({ sortOrder: 7 as never })).toBe("InvalidArgument: etcdserver: invalid sort option");
    expect(refused({ sortOrder: 2 })).toBe("Unimplemented: RangeStream does not support custom sort orders");
    expect(refused({ sortOrder: 1, sortTarget: 4 })).toBe("Unimplemented: RangeStream does not support custom sort orders");
    expect(refused({ minModRevision: 3n })).toBe("Unimplemented: RangeStream does not support revision filters");
    expect(refused({ sortOrder: 2, maxCreateRevision: 3n })).toBe("Unimplemented: RangeStream does not support custom sort orders");
  });
});
