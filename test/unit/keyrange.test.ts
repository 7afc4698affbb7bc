import { describe, expect, test } from "bun:test";
import { compareBytes, inRange, isEmptyRange, keyString, rangeString, toKeyRange } from "../../src/mvcc/keyrange.ts";

const b = (s: string) => new TextEncoder().encode(s);

describe("etcd key ranges", () => {
  test("an empty range_end is the single key", () => {
    const r = toKeyRange(b("a"), new Uint8Array(0));
    expect(inRange(r, b("a"))).toBe(true);
    expect(inRange(r, b("a\0"))).toBe(false);
    expect(inRange(r, b("ab"))).toBe(false);
  });
  test('range_end "\\0" means every key from key on', () => {
    const r = toKeyRange(b("m"), new Uint8Array([0]));
    expect(r.end).toBeUndefined();
    expect(inRange(r, b("zzzz"))).toBe(true);
    expect(inRange(r, b("l"))).toBe(false);
  });
  test("a range is half open", () => {
    const r = toKeyRange(b("a"), b("c"));
    expect(inRange(r, b("b\xff"))).toBe(true);
    expect(inRange(r, b("c"))).toBe(false);
  });
  test("a range whose end is not after its start is empty", () => {
    expect(isEmptyRange(toKeyRange(b("b"), b("a")))).toBe(true);
    expect(isEmptyRange(toKeyRange(b("a"), b("a")))).toBe(true);
  });
  test("bytes compare unsigned, shorter prefix first", () => {
    expect(compareBytes(new Uint8Array([0x7f]), new Uint8Array([0x80]))).toBeLessThan(0);
    expect(compareBytes(b("ab"), b("a"))).toBeGreaterThan(0);
  });
});

test("different ranges never share a map key, whatever bytes their keys hold", () => {
  const b = (s: string) => new TextEncoder().encode(s);
  // "x\0y" to the end, and "x" up to "y\0": joined with a NUL both read "x\0y\0"
  const a = toKeyRange(b("x\0y"), new Uint8Array([0]));
  const c = toKeyRange(b("x"), b("y\0"));
  expect(rangeString(a)).not.toBe(rangeString(c));
});

test("keyString: one character per byte, every byte value, also for a view into a larger buffer", () => {
  const whole = Uint8Array.from({ length: 600 }, (_, i) => (i * 37) % 256);
  for (const [from, to] of [[0, 600], [1, 257], [300, 301], [599, 600], [5, 5]] as const) {
    const key = whole.subarray(from, to);
    const s = keyString(key);
    expect(s.length).toBe(key.length);
    expect(Array.from(s, (c) => c.charCodeAt(0))).toEqual(Array.from(key));
  }
  // different keys, different strings; a prefix stays a prefix
  expect(keyString(Uint8Array.of(0xff, 0))).not.toBe(keyString(Uint8Array.of(0xff)));
  expect(keyString(Uint8Array.of(0x80, 0x9f, 1)).startsWith(keyString(Uint8Array.of(0x80, 0x9f)))).toBe(true);
});
