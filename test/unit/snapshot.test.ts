// The bbolt writer and reader (src/snapshot): what one writes the other reads back in
// order — small inline buckets, buckets of many pages under several branch levels, values
// spanning overflow pages — and a damaged page is reported, not misread.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fnv64a, PAGE_SIZE } from "../../src/snapshot/bbolt-format.ts";
import { BoltFormatError, BoltReader } from "../../src/snapshot/bbolt-reader.ts";
import { BoltWriter } from "../../src/snapshot/bbolt-writer.ts";
import { parseRevisionKey, revisionKey } from "../../src/snapshot/etcd-layout.ts";

const te = new TextEncoder();

async function build(path: string, big: number) {
  const f = await open(path, "w+");
  const w = await BoltWriter.create(f);
  const many = w.bucket();
  for (let i = 0; i < big; i++) {
    const value = i % 5000 === 7 ? new Uint8Array(3 * PAGE_SIZE + 123).fill(i % 251) : te.encode(`value-${i}`);
    await many.put(revisionKey(BigInt(i + 1), 0n, i % 1000 === 999), value);
  }
  const small = w.bucket();
  await small.put(te.encode("a"), te.encode("1"));
  await small.put(te.encode("b"), te.encode("2"));
  const buckets = [
    { name: te.encode("many"), value: (await many.finish()).value },
    { name: te.encode("small"), value: (await small.finish()).value },
    { name: te.encode("empty"), value: (await w.bucket().finish()).value },
  ];
  const size = await w.close(buckets);
  await f.close();
  return size;
}

describe("bbolt files", () => {
  const dir = mkdtempSync(join(tmpdir(), "strata-bbolt-"));

  test("FNV-1a 64 as bbolt's meta checksum uses it", () => {
    expect(fnv64a(te.encode("")).toString(16)).toBe("cbf29ce484222325");
    expect(fnv64a(te.encode("a")).toString(16)).toBe("af63dc4c8601ec8c");
    expect(fnv64a(te.encode("foobar")).toString(16)).toBe("85944171f73967e8");
  });

  test("what the writer writes the reader reads back, in order, across branch levels, inline buckets and overflow pages", async () => {
    const path = join(dir, "a.db");
    const size = await build(path, 100_000);
    expect(size % PAGE_SIZE).toBe(0);
    const f = await open(path, "r");
    try {
      const r = await BoltReader.open(f, size);
      const top = new Map<string, Uint8Array>();
      for await (const e of r.entries(r.root)) {
        expect(e.bucket).toBe(true);
        top.set(new TextDecoder().decode(e.key), e.value);
      }
      expect([...top.keys()]).toEqual(["empty", "many", "small"]);
      const small = [];
      for await (const e of r.entries(BoltReader.bucketRef(top.get("small")!))) small.push(new TextDecoder().decode(e.value));
      expect(small).toEqual(["1", "2"]);
      expect(BoltReader.bucketRef(top.get("small")!).root).toBe(0n); // inline
      let n = 0;
      for await (const e of r.entries(BoltReader.bucketRef(top.get("many")!))) {
        const rev = parseRevisionKey(e.key)!;
        expect(rev.main).toBe(BigInt(n + 1));
        expect(rev.tombstone).toBe(n % 1000 === 999);
        if (n % 5000 === 7) expect(e.value.length).toBe(3 * PAGE_SIZE + 123);
        else expect(new TextDecoder().decode(e.value)).toBe(`value-${n}`);
        n++;
      }
      expect(n).toBe(100_000);
    } finally {
      await f.close();
    }
  });

  test("a page whose id does not match where it sits is reported as damage", async () => {
    const path = join(dir, "b.db");
    const size = await build(path, 2000);
    const bytes = readFileSync(path);
    // page 2 is the first leaf of "many": give it another id
    bytes.writeBigUInt64LE(77n, 2 * PAGE_SIZE);
    writeFileSync(path, bytes);
    const f = await open(path, "r");
    try {
      const r = await BoltReader.open(f, size);
      const read = async () => {
        for await (const e of r.entries(r.root)) if (e.bucket) for await (const _ of r.entries(BoltReader.bucketRef(e.value)));
      };
      await expect(read()).rejects.toThrow(new BoltFormatError("page 2 carries id 77"));
    } finally {
      await f.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
