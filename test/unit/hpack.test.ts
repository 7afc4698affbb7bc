// HPACK, the header compression of strata's own HTTP/2 server (Bun's node:http2 mishandles
// flow control): RFC 7541's Appendix C examples byte for byte, round trips, malformed input.
import { describe, expect, test } from "bun:test";
import {
  constantHeaders,
  type HeaderList,
  HeaderListTooLargeError,
  HpackDecoder,
  HpackEncoder,
  HpackError,
} from "../../src/api/h2/hpack.ts";
import {
  HUFFMAN_BAD_PADDING,
  HUFFMAN_CODES,
  HUFFMAN_EOS,
  huffmanDecode,
  huffmanDecodedMaxLength,
  huffmanEncode,
} from "../../src/api/h2/huffman.ts";

const hex = (text: string) => Uint8Array.from(text.replace(/\s+/g, "").match(/../g) ?? [], (pair) => parseInt(pair, 16));
const toHex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const latin1Bytes = (text: string) => Uint8Array.from(text, (char) => char.charCodeAt(0));

/** RFC 7541 5.1, written independently of the encoder under test */
function integer(value: number, prefixBits: number, pattern: number): number[] {
  const prefixMax = (1 << prefixBits) - 1;
  if (value < prefixMax) return [pattern | value];
  const bytes = [pattern | prefixMax];
  for (value -= prefixMax; value >= 128; value = Math.floor(value / 128)) bytes.push((value % 128) | 0x80);
  bytes.push(value);
  return bytes;
}

function stringLiteral(text: string, huffman: boolean): number[] {
  const bytes = huffman ? huffmanEncode(latin1Bytes(text)) : latin1Bytes(text);
  return [...integer(bytes.length, 7, huffman ? 0x80 : 0), ...bytes];
}

/** The decoder's dynamic table, newest first, read by decoding indexed fields 62, 63, ... until one is refused. */
function dynamicTable(decoder: HpackDecoder): HeaderList {
  const entries: HeaderList = [];
  for (let index = 62; ; index++) {
    try {
      entries.push(...decoder.decode(Uint8Array.from(integer(index, 7, 0x80))));
    } catch (error) {
      expect(error).toBeInstanceOf(HpackError);
      return entries;
    }
  }
}

const tableSize = (entries: HeaderList) => entries.reduce((sum, [name, value]) => sum + name.length + value.length + 32, 0);

function expectHpackError(decoder: HpackDecoder, block: Uint8Array | number[], message: string | RegExp): void {
  const bytes = block instanceof Uint8Array ? block : Uint8Array.from(block);
  expect(() => decoder.decode(bytes)).toThrow(message);
  try {
    decoder.decode(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(HpackError);
  }
}

describe("static table", () => {
  test("indices 1 to 61 are RFC 7541 Appendix A's", () => {
    const withValues: Record<number, string> = {
      2: "GET", 3: "POST", 4: "/", 5: "/index.html", 6: "http", 7: "https",
      8: "200", 9: "204", 10: "206", 11: "304", 12: "400", 13: "404", 14: "500", 16: "gzip, deflate",
    };
    const names = `:authority :method :method :path :path :scheme :scheme :status :status :status :status :status
      :status :status accept-charset accept-encoding accept-language accept-ranges accept access-control-allow-origin
      age allow authorization cache-control content-disposition content-encoding content-language content-length
      content-location content-range content-type cookie date etag expect expires from host if-match
      if-modified-since if-none-match if-range if-unmodified-since last-modified link location max-forwards
      proxy-authenticate proxy-authorization range referer refresh retry-after server set-cookie
      strict-transport-security transfer-encoding user-agent vary via www-authenticate`.split(/\s+/);
    expect(names).toHaveLength(61);
    const block = Uint8Array.from(names, (_, i) => 0x80 | (i + 1));
    expect(new HpackDecoder().decode(block)).toEqual(names.map((name, i) => [name, withValues[i + 1] ?? ""]));
  });
});

describe("RFC 7541 C.2: single fields", () => {
  test("C.2.1 literal with indexing adds to the dynamic table", () => {
    const decoder = new HpackDecoder();
    const block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
    expect(decoder.decode(block)).toEqual([["custom-key", "custom-header"]]);
    expect(dynamicTable(decoder)).toEqual([["custom-key", "custom-header"]]);
    expect(tableSize(dynamicTable(decoder))).toBe(55);
  });
  test("C.2.2 literal without indexing, indexed name", () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(hex("040c 2f73 616d 706c 652f 7061 7468"))).toEqual([[":path", "/sample/path"]]);
    expect(dynamicTable(decoder)).toEqual([]);
  });
  test("C.2.3 literal never indexed, new name", () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(hex("1008 7061 7373 776f 7264 0673 6563 7265 74"))).toEqual([["password", "secret"]]);
    expect(dynamicTable(decoder)).toEqual([]);
  });
  test("C.2.4 indexed field", () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(hex("82"))).toEqual([[":method", "GET"]]);
    expect(dynamicTable(decoder)).toEqual([]);
  });
});

type Step = { block: string; headers: HeaderList; table: HeaderList; size: number };

function decodesInSequence(maxTableSize: number, steps: Step[]): void {
  const decoder = new HpackDecoder(maxTableSize);
  for (const step of steps) {
    expect(decoder.decode(hex(step.block))).toEqual(step.headers);
    const table = dynamicTable(decoder);
    expect(table).toEqual(step.table);
    expect(tableSize(table)).toBe(step.size);
  }
}

const request1: HeaderList = [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]];
const request2: HeaderList = [...request1, ["cache-control", "no-cache"]];
const request3: HeaderList = [
  [":method", "GET"],
  [":scheme", "https"],
  [":path", "/index.html"],
  [":authority", "www.example.com"],
  ["custom-key", "custom-value"],
];
const requestTables: HeaderList[] = [
  [[":authority", "www.example.com"]],
  [["cache-control", "no-cache"], [":authority", "www.example.com"]],
  [["custom-key", "custom-value"], ["cache-control", "no-cache"], [":authority", "www.example.com"]],
];

describe("RFC 7541 C.3/C.4: requests sharing a dynamic table", () => {
  test("C.3 without Huffman coding", () => {
    decodesInSequence(4096, [
      { block: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", headers: request1, table: requestTables[0]!, size: 57 },
      { block: "8286 84be 5808 6e6f 2d63 6163 6865", headers: request2, table: requestTables[1]!, size: 110 },
      {
        block: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        headers: request3,
        table: requestTables[2]!,
        size: 164,
      },
    ]);
  });
  test("C.4 with Huffman coding", () => {
    decodesInSequence(4096, [
      { block: "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", headers: request1, table: requestTables[0]!, size: 57 },
      { block: "8286 84be 5886 a8eb 1064 9cbf", headers: request2, table: requestTables[1]!, size: 110 },
      {
        block: "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        headers: request3,
        table: requestTables[2]!,
        size: 164,
      },
    ]);
  });
});

const date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
const date2 = "Mon, 21 Oct 2013 20:13:22 GMT";
const location = "https://www.example.com";
const cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
const response1: HeaderList = [[":status", "302"], ["cache-control", "private"], ["date", date1], ["location", location]];
const response2: HeaderList = [[":status", "307"], ...response1.slice(1)];
const response3: HeaderList = [
  [":status", "200"],
  ["cache-control", "private"],
  ["date", date2],
  ["location", location],
  ["content-encoding", "gzip"],
  ["set-cookie", cookie],
];
const responseTables: HeaderList[] = [
  [["location", location], ["date", date1], ["cache-control", "private"], [":status", "302"]],
  [[":status", "307"], ["location", location], ["date", date1], ["cache-control", "private"]],
  [["set-cookie", cookie], ["content-encoding", "gzip"], ["date", date2]],
];

describe("RFC 7541 C.5/C.6: responses evicting from a 256-octet table", () => {
  test("C.5 without Huffman coding", () => {
    decodesInSequence(256, [
      {
        block: `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
                2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
        headers: response1,
        table: responseTables[0]!,
        size: 222,
      },
      { block: "4803 3330 37c1 c0bf", headers: response2, table: responseTables[1]!, size: 222 },
      {
        block: `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
                54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
                5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`,
        headers: response3,
        table: responseTables[2]!,
        size: 215,
      },
    ]);
  });
  test("C.6 with Huffman coding", () => {
    decodesInSequence(256, [
      {
        block: `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
                2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
        headers: response1,
        table: responseTables[0]!,
        size: 222,
      },
      { block: "4883 640e ffc1 c0bf", headers: response2, table: responseTables[1]!, size: 222 },
      {
        block: `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
                77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
                9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
        headers: response3,
        table: responseTables[2]!,
        size: 215,
      },
    ]);
  });
});

describe("Huffman code", () => {
  test("the table is RFC 7541's: 257 codes, complete, canonical, EOS 30 ones", () => {
    expect(HUFFMAN_CODES.length).toBe(2 * 257);
    const lengths = Array.from({ length: 257 }, (_, symbol) => HUFFMAN_CODES[2 * symbol + 1]!);
    // complete: the code space is exactly filled (Kraft sum 1), so any typo in a code or length shows
    expect(lengths.reduce((sum, length) => sum + 2 ** (30 - length), 0)).toBe(2 ** 30);
    // canonical: codes of each length follow in symbol order, as the RFC's table is built
    const order = lengths.map((length, symbol) => ({ length, symbol })).sort((a, b) => a.length - b.length || a.symbol - b.symbol);
    let code = -1;
    let previousLength = order[0]!.length;
    for (const { length, symbol } of order) {
      code = (code + 1) * 2 ** (length - previousLength);
      previousLength = length;
      expect([symbol, HUFFMAN_CODES[2 * symbol]]).toEqual([symbol, code]);
    }
    expect([HUFFMAN_CODES[2 * 256], HUFFMAN_CODES[2 * 256 + 1]]).toEqual([0x3fffffff, 30]);
    expect([HUFFMAN_CODES[2 * 48], HUFFMAN_CODES[2 * 48 + 1]]).toEqual([0x0, 5]); // '0'
    expect([HUFFMAN_CODES[2 * 0x7b], HUFFMAN_CODES[2 * 0x7b + 1]]).toEqual([0x7ffe, 15]); // '{'
  });

  const rfcStrings: Array<[string, string]> = [
    ["www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"],
    ["no-cache", "a8eb 1064 9cbf"],
    ["custom-key", "25a8 49e9 5ba9 7d7f"],
    ["custom-value", "25a8 49e9 5bb8 e8b4 bf"],
    ["302", "6402"],
    ["private", "aec3 771a 4b"],
    [date1, "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"],
    [location, "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"],
    ["gzip", "9bd9 ab"],
    [cookie, "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07"],
  ];
  const decodeToString = (encoded: Uint8Array): string | number => {
    const out = new Uint8Array(huffmanDecodedMaxLength(encoded.length));
    const written = huffmanDecode(encoded, 0, encoded.length, out);
    return written < 0 ? written : String.fromCharCode(...out.subarray(0, written));
  };

  test("RFC 7541 Appendix C's strings encode and decode", () => {
    for (const [text, encoded] of rfcStrings) {
      expect(toHex(huffmanEncode(latin1Bytes(text)))).toBe(encoded.replace(/ /g, ""));
      expect(decodeToString(hex(encoded))).toBe(text);
    }
  });

  test("every byte value round-trips, alone and in random strings", () => {
    for (let byte = 0; byte < 256; byte++) expect(decodeToString(huffmanEncode(Uint8Array.of(byte)))).toBe(String.fromCharCode(byte));
    const random = seededRandom(7);
    for (let i = 0; i < 2000; i++) {
      const bytes = Uint8Array.from({ length: random(40) }, () => random(256));
      expect(decodeToString(huffmanEncode(bytes))).toBe(String.fromCharCode(...bytes));
    }
  });

  test("decodes into its output from index 0 whatever the input's offset", () => {
    const encoded = Uint8Array.of(0xaa, 0xbb, ...hex("9bd9 ab"), 0xcc);
    const out = new Uint8Array(8);
    expect(huffmanDecode(encoded, 2, 5, out)).toBe(4);
    expect(String.fromCharCode(...out.subarray(0, 4))).toBe("gzip");
  });

  test("padding must be at most 7 bits, all ones; EOS must not appear", () => {
    const decode = (bytes: number[]) => huffmanDecode(Uint8Array.from(bytes), 0, bytes.length, new Uint8Array(16));
    expect(decode([0x1f])).toBe(1); // 'a' is 00011, then 111 padding
    expect(decode([0x18])).toBe(HUFFMAN_BAD_PADDING); // padding 000
    expect(decode([0x1e])).toBe(HUFFMAN_BAD_PADDING); // padding 110
    expect(decode([0x1f, 0xff])).toBe(HUFFMAN_BAD_PADDING); // 11 bits of padding
    expect(decode([0xff])).toBe(HUFFMAN_BAD_PADDING); // 8 bits of padding, nothing else
    expect(decode([0xfe])).toBe(HUFFMAN_BAD_PADDING); // an unfinished code ending in a 0
    expect(decode([0xff, 0xff, 0xff, 0xff])).toBe(HUFFMAN_EOS); // EOS (30 ones) and 2 bits of padding
    expect(decode([0x1f, 0xff, 0xff, 0xff, 0xfc])).toBe(HUFFMAN_EOS); // 'a' then EOS
    expect(decode([])).toBe(0);
  });
});

describe("HpackEncoder", () => {
  const encode = (headers: HeaderList) => toHex(new HpackEncoder().encode(headers));

  test("static-table matches are indexed fields", () => {
    expect(encode([[":status", "200"]])).toBe("88");
    expect(encode([[":method", "POST"], [":scheme", "https"], [":path", "/"]])).toBe("838784");
    expect(encode([["accept-encoding", "gzip, deflate"]])).toBe("90");
  });

  test("a static name with another value is a literal without indexing with the name's first index", () => {
    // content-type is 31: 4-bit prefix full (0f), then 31 - 15 = 16
    expect(encode([["content-type", "application/grpc"]])).toBe("0f10" + "10" + toHex(latin1Bytes("application/grpc")));
    // :status 503: name index 8, the first :status
    expect(encode([[":status", "503"]])).toBe("08" + "03" + toHex(latin1Bytes("503")));
  });

  test("a name not in the static table is a literal without indexing with a new name", () => {
    expect(encode([["grpc-status", "0"]])).toBe("00" + "0b" + toHex(latin1Bytes("grpc-status")) + "01" + "30");
    expect(encode([["x-empty", ""]])).toBe("00" + "07" + toHex(latin1Bytes("x-empty")) + "00");
  });

  test("long strings use multi-byte lengths (RFC 7541 C.1.2's 1337)", () => {
    const value = "v".repeat(1337);
    // 7-bit prefix full (7f), then 1337 - 127 = 1210 = 0x3a + 0x80, 0x09
    expect(encode([["x", value]])).toBe("00" + "01" + "78" + "7fba09" + "76".repeat(1337));
  });

  test("chars are bytes (latin1); a char over 0xff is refused", () => {
    expect(encode([["x", "\u00e9\u00ff\u0000"]])).toBe("00" + "01" + "78" + "03e9ff00");
    expect(() => new HpackEncoder().encode([["x", "\u0100"]])).toThrow(TypeError);
    expect(() => new HpackEncoder().encode([["x", "\u{1f600}"]])).toThrow("latin1");
  });

  test("an empty list is an empty block; each result is its own copy", () => {
    const encoder = new HpackEncoder();
    expect(encoder.encode([]).length).toBe(0);
    const first = encoder.encode([[":status", "200"]]);
    encoder.encode([[":status", "404"]]);
    expect(toHex(first)).toBe("88");
  });

  test("a constant list is encoded once, to the bytes its copy encodes to", () => {
    const list = constantHeaders([[":status", "200"], ["content-type", "application/grpc+proto"], ["x-custom", "v"]]);
    expect(Object.isFrozen(list) && Object.isFrozen(list[0])).toBe(true);
    const first = new HpackEncoder().encode(list);
    // any encoder: the encoder keeps no table state
    const again = new HpackEncoder().encode(list);
    expect(again).toBe(first);
    expect(toHex(first)).toBe(toHex(new HpackEncoder().encode(list.map(([n, v]) => [n, v] as [string, string]))));
  });
});

function seededRandom(seed: number): (below: number) => number {
  let state = seed >>> 0;
  return (below) => {
    // xorshift32: reproducible, so a failure can be rerun
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state % below;
  };
}

const NAMES = [":status", ":path", "content-type", "grpc-status", "grpc-message", "te", "user-agent", "x-Mixed-Case", "date", ""];
function randomHeaders(random: (below: number) => number): HeaderList {
  return Array.from({ length: random(12) }, () => {
    const name = NAMES[random(NAMES.length)]!;
    const choice = random(4);
    const value =
      choice === 0
        ? "200"
        : choice === 1
          ? String.fromCharCode(...Array.from({ length: random(300) }, () => random(256)))
          : "v" + random(50);
    return [name, value] as [string, string];
  });
}

describe("round trips", () => {
  test("encoder to decoder, random header lists", () => {
    const random = seededRandom(42);
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    for (let i = 0; i < 2000; i++) {
      const headers = randomHeaders(random);
      expect(decoder.decode(encoder.encode(headers))).toEqual(headers);
    }
    expect(dynamicTable(decoder)).toEqual([]); // the encoder never indexes
  });

  test("a dynamic-table-using, Huffman-coding peer, checked against a simple table model", () => {
    // a test-side encoder like grpc-go's: fields it has sent before are indexed, new ones are
    // added with incremental indexing, strings Huffman-coded or raw at random, and now and
    // then a block starts by shrinking or restoring the table
    const random = seededRandom(9);
    const maxTableSize = 512;
    const decoder = new HpackDecoder(maxTableSize);
    let model: HeaderList = [];
    let limit = maxTableSize;
    const evict = () => {
      while (tableSize(model) > limit) model.pop();
    };
    for (let i = 0; i < 3000; i++) {
      const block: number[] = [];
      if (random(10) === 0) {
        limit = random(2) ? random(maxTableSize + 1) : maxTableSize;
        block.push(...integer(limit, 5, 0x20));
        evict();
      }
      const headers = randomHeaders(random);
      for (const [name, value] of headers) {
        const known = model.findIndex(([n, v]) => n === name && v === value);
        if (known >= 0 && random(4) !== 0) {
          block.push(...integer(62 + known, 7, 0x80));
          continue;
        }
        const representation = random(3);
        const pattern = [0x40, 0x00, 0x10][representation]!;
        const prefixBits = representation === 0 ? 6 : 4;
        const knownName = model.findIndex(([n]) => n === name);
        if (knownName >= 0 && random(2)) block.push(...integer(62 + knownName, prefixBits, pattern));
        else block.push(pattern, ...stringLiteral(name, random(2) === 1));
        block.push(...stringLiteral(value, random(2) === 1));
        if (representation === 0) {
          const entrySize = name.length + value.length + 32;
          model = entrySize > limit ? [] : [[name, value], ...model];
          evict();
        }
      }
      expect(decoder.decode(Uint8Array.from(block))).toEqual(headers);
    }
    expect(dynamicTable(decoder)).toEqual(model);
  });

  test("names keep their case and bytes over 0x7f survive", () => {
    const decoder = new HpackDecoder();
    const block = [0x40, ...stringLiteral("X-Upper", true), ...stringLiteral("caf\u00e9\u0080", false)];
    expect(decoder.decode(Uint8Array.from(block))).toEqual([["X-Upper", "caf\u00e9\u0080"]]);
  });

  test("decodes a block at an offset in a larger buffer", () => {
    const backing = new Uint8Array(10);
    backing.set([0x88, 0x82], 4);
    expect(new HpackDecoder().decode(backing.subarray(4, 6))).toEqual([[":status", "200"], [":method", "GET"]]);
  });
});

describe("dynamic table size", () => {
  test("a size update to 0 empties the table; back to the maximum is allowed", () => {
    const decoder = new HpackDecoder();
    decoder.decode(Uint8Array.from([0x40, ...stringLiteral("a", false), ...stringLiteral("b", false)]));
    expect(dynamicTable(decoder)).toEqual([["a", "b"]]);
    expect(decoder.decode(Uint8Array.of(0x20))).toEqual([]);
    expect(dynamicTable(decoder)).toEqual([]);
    // 4096 in a 5-bit prefix: 1f, then 4065 = 0x61 + 0x80, 0x1f
    expect(decoder.decode(hex("3fe11f 82"))).toEqual([[":method", "GET"]]);
  });

  test("two size updates at the start of a block are allowed", () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(hex("20 3fe11f 82"))).toEqual([[":method", "GET"]]);
  });

  test("a smaller limit evicts the oldest entries, and holds for later additions", () => {
    const decoder = new HpackDecoder();
    const add = (name: string, value: string) => [0x40, ...stringLiteral(name, false), ...stringLiteral(value, false)];
    decoder.decode(Uint8Array.from([...add("a", "1"), ...add("b", "2"), ...add("c", "3")]));
    expect(dynamicTable(decoder)).toEqual([["c", "3"], ["b", "2"], ["a", "1"]]);
    decoder.decode(Uint8Array.from(integer(68, 5, 0x20))); // room for two 34-octet entries
    expect(dynamicTable(decoder)).toEqual([["c", "3"], ["b", "2"]]);
    decoder.decode(Uint8Array.from(add("d", "4")));
    expect(dynamicTable(decoder)).toEqual([["d", "4"], ["c", "3"]]);
    // an entry larger than the limit empties the table and is not added, but is still returned
    expect(decoder.decode(Uint8Array.from(add("big", "x".repeat(40))))).toEqual([["big", "x".repeat(40)]]);
    expect(dynamicTable(decoder)).toEqual([]);
  });

  test("the ring wraps: many more additions than it holds", () => {
    const decoder = new HpackDecoder(256);
    for (let i = 0; i < 1000; i++) {
      decoder.decode(Uint8Array.from([0x40, ...stringLiteral("k", false), ...stringLiteral(String(i).padStart(4, "0"), false)]));
    }
    // each entry is 1 + 4 + 32 = 37 octets: 6 fit in 256
    expect(dynamicTable(decoder)).toEqual(["0999", "0998", "0997", "0996", "0995", "0994"].map((v) => ["k", v]));
  });
});

describe("malformed header blocks", () => {
  test("index 0", () => {
    expectHpackError(new HpackDecoder(), [0x80], "index 0");
  });

  test("an index beyond the static and dynamic tables", () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(Uint8Array.of(0xbd))).toEqual([["www-authenticate", ""]]); // 61, the last static entry
    expectHpackError(decoder, [0xbe], "index 62 is beyond the table (61 static + 0 dynamic entries)");
    // as a literal's name index, too
    expectHpackError(decoder, [0x7e, 0x01, 0x61], "index 62 is beyond");
    expectHpackError(decoder, [0x0f, 0x2f, 0x01, 0x61], "index 62 is beyond");
    decoder.decode(Uint8Array.from([0x40, ...stringLiteral("a", false), ...stringLiteral("b", false)]));
    expect(decoder.decode(Uint8Array.of(0xbe))).toEqual([["a", "b"]]);
    expectHpackError(decoder, [0xbf], "index 63 is beyond the table (61 static + 1 dynamic entries)");
  });

  test("a size update over the maximum we advertised", () => {
    // 4097 in a 5-bit prefix: 1f, then 4066 = 0x62 + 0x80, 0x1f
    expectHpackError(new HpackDecoder(), hex("3fe21f"), "size update to 4097, over the 4096 allowed");
    expectHpackError(new HpackDecoder(256), Uint8Array.from(integer(257, 5, 0x20)), "over the 256 allowed");
    expect(new HpackDecoder(256).decode(Uint8Array.from(integer(256, 5, 0x20)))).toEqual([]);
  });

  test("a size update after a field", () => {
    expectHpackError(new HpackDecoder(), [0x82, 0x20], "size update after a header field");
  });

  test("bad Huffman padding and EOS inside a string", () => {
    expectHpackError(new HpackDecoder(), [0x00, 0x81, 0x18, 0x00], "padding");
    expectHpackError(new HpackDecoder(), [0x00, 0x01, 0x61, 0x82, 0x1f, 0xff], "padding");
    expectHpackError(new HpackDecoder(), [0x00, 0x01, 0x61, 0x84, 0xff, 0xff, 0xff, 0xff], "contains EOS");
    expect(new HpackDecoder().decode(Uint8Array.of(0x00, 0x01, 0x61, 0x81, 0x1f))).toEqual([["a", "a"]]);
  });

  test("truncated integers", () => {
    expectHpackError(new HpackDecoder(), [0xff], "ends inside an integer");
    expectHpackError(new HpackDecoder(), [0xff, 0x80], "ends inside an integer");
    expectHpackError(new HpackDecoder(), [0x00, 0x7f], "ends inside an integer"); // a string length
  });

  test("truncated and missing strings", () => {
    expectHpackError(new HpackDecoder(), [0x40, 0x05, 0x61], "ends inside a string");
    expectHpackError(new HpackDecoder(), [0x00, 0x81], "ends inside a string");
    expectHpackError(new HpackDecoder(), [0x40], "ends before a string");
    expectHpackError(new HpackDecoder(), [0x04], "ends before a string"); // :path, its value missing
    expectHpackError(new HpackDecoder(), [0x00, 0x01, 0x61], "ends before a string");
  });

  test("integer overflow", () => {
    expectHpackError(new HpackDecoder(), [0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], "integer overflow");
    // zero-valued continuation bytes without end
    expectHpackError(new HpackDecoder(), [0xff, ...new Array<number>(20).fill(0x80), 0x00], "integer overflow");
    // 2^31 - 1 is the largest accepted: as an index it is merely out of range
    expectHpackError(new HpackDecoder(), Uint8Array.from(integer(2 ** 31 - 1, 7, 0x80)), "beyond the table");
    expectHpackError(new HpackDecoder(), Uint8Array.from(integer(2 ** 31, 7, 0x80)), "integer overflow");
  });

  test("a header list over the limit", () => {
    const decoder = new HpackDecoder(4096, 100);
    const field = (name: string, value: string) => [0x40, ...stringLiteral(name, false), ...stringLiteral(value, true)];
    // 1 + 10 + 32 = 43 per field: two fit in 100, three do not
    expect(decoder.decode(Uint8Array.from([...field("a", "0123456789"), ...field("b", "0123456789")]))).toHaveLength(2);
    const tooLarge = Uint8Array.from([...field("c", "0123456789"), ...field("d", "0123456789"), ...field("e", "0123456789")]);
    expect(() => decoder.decode(tooLarge)).toThrow("header list of 129 bytes (name + value + 32 per field) is over the 100 allowed");
    expect(() => decoder.decode(tooLarge)).toThrow(HeaderListTooLargeError);
    expectHpackError(decoder, tooLarge, "over the 100 allowed");
    // the refused blocks were still decoded whole, so the table stayed in step with the peer's
    expect(dynamicTable(decoder).slice(0, 3)).toEqual([["e", "0123456789"], ["d", "0123456789"], ["c", "0123456789"]]);
  });
});
