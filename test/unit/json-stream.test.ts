// The gateway's reader of a JSON request stream (Watch, LeaseKeepAlive bodies).
import { expect, test } from "bun:test";
import { JsonStreamError, jsonValues } from "../../src/api/gateway/json-stream.ts";

async function* pieces(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield new TextEncoder().encode(p);
}

async function all(it: AsyncIterable<unknown>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const v of it) out.push(v);
  return out;
}

test("values one after another, whitespace or nothing between, cut anywhere", async () => {
  const body = '{"a":1} {"b":"}{\\"x"}\n{"c":[1,{"d":2}]}{}';
  const expected = [{ a: 1 }, { b: '}{"x' }, { c: [1, { d: 2 }] }, {}];
  expect(await all(jsonValues(pieces(body), 1000))).toEqual(expected);
  // every split of the body into two pieces reads the same
  for (let i = 1; i < body.length; i++) {
    expect(await all(jsonValues(pieces(body.slice(0, i), body.slice(i)), 1000))).toEqual(expected);
  }
});

test("a value above the limit is refused while it is read, split or whole", async () => {
  const big = `{"k":"${"x".repeat(100)}"}`;
  await expect(all(jsonValues(pieces(big), 50))).rejects.toThrow("a JSON message exceeds 50 bytes");
  await expect(all(jsonValues(pieces(big.slice(0, 60), big.slice(60)), 50))).rejects.toThrow(JsonStreamError);
  // a value that never ends is refused once it passes the limit, not held
  async function* endless(): AsyncGenerator<Uint8Array> {
    yield new TextEncoder().encode('{"k":"');
    for (let i = 0; i < 1000; i++) yield new Uint8Array(10).fill(0x61);
  }
  await expect(all(jsonValues(endless(), 100))).rejects.toThrow("exceeds 100 bytes");
});

test("what is not an object, a cut-off value, and bad JSON inside one", async () => {
  await expect(all(jsonValues(pieces("xx"), 100))).rejects.toThrow("invalid character 'x' looking for beginning of value");
  await expect(all(jsonValues(pieces('{"a":1} {"b":'), 100))).rejects.toThrow("unexpected EOF");
  await expect(all(jsonValues(pieces("{a:1}"), 100))).rejects.toThrow(JsonStreamError);
  expect(await all(jsonValues(pieces("  \n "), 100))).toEqual([]);
});

test("integers beyond 2^53 stay exact (Go writes int64 lease IDs as bare numbers)", async () => {
  const body = '{"ID":5837195791810451369,"TTL":2,"x":"12345678901234567890","f":1.5e3,"n":-9223372036854775808}';
  expect(await all(jsonValues(pieces(body), 1000))).toEqual([
    { ID: "5837195791810451369", TTL: 2, x: "12345678901234567890", f: 1500, n: "-9223372036854775808" },
  ]);
  expect(await all(jsonValues(pieces('{"s":"a\\"9007199254740993"}'), 1000))).toEqual([{ s: 'a"9007199254740993' }]);
});
