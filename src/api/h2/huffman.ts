// HPACK's Huffman code (RFC 7541 Appendix B), which peers such as grpc-go use for most
// header strings. strata serves gRPC on its own HTTP/2 implementation (Bun's node:http2
// mishandles flow control), so it decodes these strings itself.

/**
 * The RFC's code table as (code, bit length) pairs, symbol 0 first, EOS (256) last; a
 * code's bits are the low `length` bits of `code`, most significant first.
 */
export const HUFFMAN_CODES: readonly number[] = [
  0x1ff8, 13, 0x7fffd8, 23, 0xfffffe2, 28, 0xfffffe3, 28, 0xfffffe4, 28, 0xfffffe5, 28, // 0-5
  0xfffffe6, 28, 0xfffffe7, 28, 0xfffffe8, 28, 0xffffea, 24, 0x3ffffffc, 30, 0xfffffe9, 28, // 6-11
  0xfffffea, 28, 0x3ffffffd, 30, 0xfffffeb, 28, 0xfffffec, 28, 0xfffffed, 28, 0xfffffee, 28, // 12-17
  0xfffffef, 28, 0xffffff0, 28, 0xffffff1, 28, 0xffffff2, 28, 0x3ffffffe, 30, 0xffffff3, 28, // 18-23
  0xffffff4, 28, 0xffffff5, 28, 0xffffff6, 28, 0xffffff7, 28, 0xffffff8, 28, 0xffffff9, 28, // 24-29
  0xffffffa, 28, 0xffffffb, 28, 0x14, 6, 0x3f8, 10, 0x3f9, 10, 0xffa, 12, // 30-35
  0x1ff9, 13, 0x15, 6, 0xf8, 8, 0x7fa, 11, 0x3fa, 10, 0x3fb, 10, // 36-41
  0xf9, 8, 0x7fb, 11, 0xfa, 8, 0x16, 6, 0x17, 6, 0x18, 6, // 42-47
  0x0, 5, 0x1, 5, 0x2, 5, 0x19, 6, 0x1a, 6, 0x1b, 6, // 48-53
  0x1c, 6, 0x1d, 6, 0x1e, 6, 0x1f, 6, 0x5c, 7, 0xfb, 8, // 54-59
  0x7ffc, 15, 0x20, 6, 0xffb, 12, 0x3fc, 10, 0x1ffa, 13, 0x21, 6, // 60-65
  0x5d, 7, 0x5e, 7, 0x5f, 7, 0x60, 7, 0x61, 7, 0x62, 7, // 66-71
  0x63, 7, 0x64, 7, 0x65, 7, 0x66, 7, 0x67, 7, 0x68, 7, // 72-77
  0x69, 7, 0x6a, 7, 0x6b, 7, 0x6c, 7, 0x6d, 7, 0x6e, 7, // 78-83
  0x6f, 7, 0x70, 7, 0x71, 7, 0x72, 7, 0xfc, 8, 0x73, 7, // 84-89
  0xfd, 8, 0x1ffb, 13, 0x7fff0, 19, 0x1ffc, 13, 0x3ffc, 14, 0x22, 6, // 90-95
  0x7ffd, 15, 0x3, 5, 0x23, 6, 0x4, 5, 0x24, 6, 0x5, 5, // 96-101
  0x25, 6, 0x26, 6, 0x27, 6, 0x6, 5, 0x74, 7, 0x75, 7, // 102-107
  0x28, 6, 0x29, 6, 0x2a, 6, 0x7, 5, 0x2b, 6, 0x76, 7, // 108-113
  0x2c, 6, 0x8, 5, 0x9, 5, 0x2d, 6, 0x77, 7, 0x78, 7, // 114-119
  0x79, 7, 0x7a, 7, 0x7b, 7, 0x7ffe, 15, 0x7fc, 11, 0x3ffd, 14, // 120-125
  0x1ffd, 13, 0xffffffc, 28, 0xfffe6, 20, 0x3fffd2, 22, 0xfffe7, 20, 0xfffe8, 20, // 126-131
  0x3fffd3, 22, 0x3fffd4, 22, 0x3fffd5, 22, 0x7fffd9, 23, 0x3fffd6, 22, 0x7fffda, 23, // 132-137
  0x7fffdb, 23, 0x7fffdc, 23, 0x7fffdd, 23, 0x7fffde, 23, 0xffffeb, 24, 0x7fffdf, 23, // 138-143
  0xffffec, 24, 0xffffed, 24, 0x3fffd7, 22, 0x7fffe0, 23, 0xffffee, 24, 0x7fffe1, 23, // 144-149
  0x7fffe2, 23, 0x7fffe3, 23, 0x7fffe4, 23, 0x1fffdc, 21, 0x3fffd8, 22, 0x7fffe5, 23, // 150-155
  0x3fffd9, 22, 0x7fffe6, 23, 0x7fffe7, 23, 0xffffef, 24, 0x3fffda, 22, 0x1fffdd, 21, // 156-161
  0xfffe9, 20, 0x3fffdb, 22, 0x3fffdc, 22, 0x7fffe8, 23, 0x7fffe9, 23, 0x1fffde, 21, // 162-167
  0x7fffea, 23, 0x3fffdd, 22, 0x3fffde, 22, 0xfffff0, 24, 0x1fffdf, 21, 0x3fffdf, 22, // 168-173
  0x7fffeb, 23, 0x7fffec, 23, 0x1fffe0, 21, 0x1fffe1, 21, 0x3fffe0, 22, 0x1fffe2, 21, // 174-179
  0x7fffed, 23, 0x3fffe1, 22, 0x7fffee, 23, 0x7fffef, 23, 0xfffea, 20, 0x3fffe2, 22, // 180-185
  0x3fffe3, 22, 0x3fffe4, 22, 0x7ffff0, 23, 0x3fffe5, 22, 0x3fffe6, 22, 0x7ffff1, 23, // 186-191
  0x3ffffe0, 26, 0x3ffffe1, 26, 0xfffeb, 20, 0x7fff1, 19, 0x3fffe7, 22, 0x7ffff2, 23, // 192-197
  0x3fffe8, 22, 0x1ffffec, 25, 0x3ffffe2, 26, 0x3ffffe3, 26, 0x3ffffe4, 26, 0x7ffffde, 27, // 198-203
  0x7ffffdf, 27, 0x3ffffe5, 26, 0xfffff1, 24, 0x1ffffed, 25, 0x7fff2, 19, 0x1fffe3, 21, // 204-209
  0x3ffffe6, 26, 0x7ffffe0, 27, 0x7ffffe1, 27, 0x3ffffe7, 26, 0x7ffffe2, 27, 0xfffff2, 24, // 210-215
  0x1fffe4, 21, 0x1fffe5, 21, 0x3ffffe8, 26, 0x3ffffe9, 26, 0xffffffd, 28, 0x7ffffe3, 27, // 216-221
  0x7ffffe4, 27, 0x7ffffe5, 27, 0xfffec, 20, 0xfffff3, 24, 0xfffed, 20, 0x1fffe6, 21, // 222-227
  0x3fffe9, 22, 0x1fffe7, 21, 0x1fffe8, 21, 0x7ffff3, 23, 0x3fffea, 22, 0x3fffeb, 22, // 228-233
  0x1ffffee, 25, 0x1ffffef, 25, 0xfffff4, 24, 0xfffff5, 24, 0x3ffffea, 26, 0x7ffff4, 23, // 234-239
  0x3ffffeb, 26, 0x7ffffe6, 27, 0x3ffffec, 26, 0x3ffffed, 26, 0x7ffffe7, 27, 0x7ffffe8, 27, // 240-245
  0x7ffffe9, 27, 0x7ffffea, 27, 0x7ffffeb, 27, 0xffffffe, 28, 0x7ffffec, 27, 0x7ffffed, 27, // 246-251
  0x7ffffee, 27, 0x7ffffef, 27, 0x7fffff0, 27, 0x3ffffee, 26, 0x3fffffff, 30, // 252-256
];

const EOS = 256;

/*
 * Decoding walks the code tree four bits at a time. The tree's 256 internal nodes are the
 * states; for each state and nibble the table holds the state reached, and the symbol
 * completed on the way, if any (every code is at least 5 bits long, so a nibble completes
 * at most one). A walk that completes EOS fails: EOS must not appear inside a string.
 */
const NEXT_STATE_MASK = 0xff;
const EMITS = 0x100;
const FAILS = 0x200;
const SYMBOL_SHIFT = 10;

const { transitions, acceptsEnd } = buildDecoder();

function buildDecoder(): { transitions: Uint32Array; acceptsEnd: Uint8Array } {
  // children[2 * node + bit]: a node number, or ~symbol for a leaf; a mistyped table must
  // fail here, at load, not decode wrongly
  const UNSET = -1 << 30;
  const children = new Int32Array(2 * 256).fill(UNSET);
  let nodes = 1;
  const broken = (symbol: number) => new Error(`HPACK Huffman table: the code of symbol ${symbol} clashes with another`);
  for (let symbol = 0; symbol <= EOS; symbol++) {
    const code = HUFFMAN_CODES[2 * symbol]!;
    const length = HUFFMAN_CODES[2 * symbol + 1]!;
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const slot = 2 * node + ((code >>> bit) & 1);
      if (bit === 0) {
        if (children[slot] !== UNSET) throw broken(symbol);
        children[slot] = ~symbol;
      } else {
        if (children[slot] === UNSET) {
          if (nodes === 256) throw broken(symbol);
          children[slot] = nodes++;
        }
        node = children[slot]!;
        if (node < 0) throw broken(symbol);
      }
    }
  }
  if (children.includes(UNSET)) throw new Error("HPACK Huffman table: the code is incomplete");

  const transitions = new Uint32Array(256 * 16);
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let bit = 3; bit >= 0; bit--) {
        const child = children[2 * node + ((nibble >>> bit) & 1)]!;
        if (child >= 0) {
          node = child;
          continue;
        }
        const symbol = ~child;
        if (symbol === EOS) {
          entry = FAILS;
          break;
        }
        entry = EMITS | (symbol << SYMBOL_SHIFT);
        node = 0;
      }
      transitions[state * 16 + nibble] = entry | node;
    }
  }

  // A string may end at the root or part-way down the all-ones path (EOS's prefix) after
  // at most 7 bits: that is its padding (RFC 7541 5.2).
  const acceptsEnd = new Uint8Array(256);
  for (let node = 0, depth = 0; depth <= 7; depth++, node = children[2 * node + 1]!) acceptsEnd[node] = 1;
  return { transitions, acceptsEnd };
}

/** huffmanDecode's result when the string contains the EOS symbol */
export const HUFFMAN_EOS = -1;
/** huffmanDecode's result when the padding is over 7 bits or not all ones */
export const HUFFMAN_BAD_PADDING = -2;

/** The most bytes `encodedLength` bytes can decode to (the shortest code is 5 bits). */
export function huffmanDecodedMaxLength(encodedLength: number): number {
  return Math.floor((encodedLength * 8) / 5);
}

/**
 * Decodes src[start, end) into out from index 0 and returns the number of bytes written,
 * or HUFFMAN_EOS / HUFFMAN_BAD_PADDING. out must hold huffmanDecodedMaxLength(end - start).
 */
export function huffmanDecode(src: Uint8Array, start: number, end: number, out: Uint8Array): number {
  let state = 0;
  let written = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i]!;
    let entry = transitions[(state << 4) | (byte >>> 4)]!;
    if (entry & (EMITS | FAILS)) {
      if (entry & FAILS) return HUFFMAN_EOS;
      out[written++] = entry >>> SYMBOL_SHIFT;
    }
    state = entry & NEXT_STATE_MASK;
    entry = transitions[(state << 4) | (byte & 0xf)]!;
    if (entry & (EMITS | FAILS)) {
      if (entry & FAILS) return HUFFMAN_EOS;
      out[written++] = entry >>> SYMBOL_SHIFT;
    }
    state = entry & NEXT_STATE_MASK;
  }
  return acceptsEnd[state] ? written : HUFFMAN_BAD_PADDING;
}

/** Huffman-encodes bytes, padding the last byte with ones (our encoder sends strings raw; tests use this). */
export function huffmanEncode(bytes: Uint8Array): Uint8Array {
  let bits = 0;
  for (const byte of bytes) bits += HUFFMAN_CODES[2 * byte + 1]!;
  const out = new Uint8Array(Math.ceil(bits / 8));
  let pending = 0; // bits not yet written, in the low `pendingBits` bits
  let pendingBits = 0;
  let written = 0;
  const push = (value: number, count: number) => {
    // count <= 16 and pendingBits < 8 keep the accumulator within 32 bits
    pending = ((pending << count) | value) >>> 0;
    pendingBits += count;
    while (pendingBits >= 8) {
      pendingBits -= 8;
      out[written++] = pending >>> pendingBits;
      pending &= (1 << pendingBits) - 1;
    }
  };
  for (const byte of bytes) {
    const code = HUFFMAN_CODES[2 * byte]!;
    const length = HUFFMAN_CODES[2 * byte + 1]!;
    if (length > 16) {
      push(code >>> 16, length - 16);
      push(code & 0xffff, 16);
    } else {
      push(code, length);
    }
  }
  if (pendingBits > 0) out[written] = (pending << (8 - pendingBits)) | ((1 << (8 - pendingBits)) - 1);
  return out;
}
