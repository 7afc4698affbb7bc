// HPACK (RFC 7541), HTTP/2's header compression. strata serves gRPC on its own HTTP/2
// implementation because Bun's node:http2 mishandles flow control, so it decodes the
// header blocks clients send and encodes the ones it answers with.
//
// Header strings are byte strings: bytes map to chars 0-255 one to one (latin1) and back,
// so a string's length is its size in octets, as the table and list size rules count it.
import { Buffer } from "node:buffer";
import { HUFFMAN_BAD_PADDING, HUFFMAN_EOS, huffmanDecode, huffmanDecodedMaxLength } from "./huffman.ts";

export type HeaderList = Array<[name: string, value: string]>;

/** Malformed input: the connection gets COMPRESSION_ERROR. */
export class HpackError extends Error {
  override name = "HpackError";
}

/**
 * The decoded header list is over maxHeaderListBytes. The whole block was still decoded,
 * so the dynamic table is intact: the connection may refuse just the stream instead.
 */
export class HeaderListTooLargeError extends HpackError {
  override name = "HeaderListTooLargeError";
}

/** RFC 7541 Appendix A; index 0 is unused */
const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  ["", ""],
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];
const STATIC_COUNT = STATIC_TABLE.length - 1;
const STATIC_NAMES = STATIC_TABLE.map(([name]) => name);
const STATIC_VALUES = STATIC_TABLE.map(([, value]) => value);

/** RFC 7541 4.1: an entry's size is its name and value octets plus 32 */
const ENTRY_OVERHEAD = 32;

/** Larger integers are refused; nothing in a header block we accept comes near. */
const MAX_INTEGER = 0x7fffffff;

/** The dynamic table, newest entry first, as a ring over two arrays. */
class DynamicTable {
  private readonly names: string[];
  private readonly values: string[];
  private readonly mask: number;
  private newest = 0;
  count = 0;
  /** octets, as RFC 7541 4.1 counts them */
  size = 0;

  constructor(
    /** the size limit now in force: the last size update's, at most maxTableSize */
    private limit: number,
    maxTableSize: number,
  ) {
    // every entry takes at least 32 octets, so the ring never holds more than this
    let capacity = 1;
    while (capacity < maxTableSize / ENTRY_OVERHEAD) capacity *= 2;
    this.names = new Array<string>(capacity).fill("");
    this.values = new Array<string>(capacity).fill("");
    this.mask = capacity - 1;
  }

  /** i counts from 0, the newest entry; the caller checks i < count */
  name(i: number): string {
    return this.names[(this.newest + i) & this.mask]!;
  }

  value(i: number): string {
    return this.values[(this.newest + i) & this.mask]!;
  }

  add(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    // RFC 7541 4.4: an entry larger than the table empties it and is not added
    if (entrySize > this.limit) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.limit - entrySize);
    this.newest = (this.newest - 1) & this.mask;
    this.names[this.newest] = name;
    this.values[this.newest] = value;
    this.count++;
    this.size += entrySize;
  }

  setLimit(limit: number): void {
    this.limit = limit;
    this.evictTo(limit);
  }

  private evictTo(size: number): void {
    while (this.size > size) {
      const oldest = (this.newest + this.count - 1) & this.mask;
      this.size -= this.names[oldest]!.length + this.values[oldest]!.length + ENTRY_OVERHEAD;
      // drop the strings so the ring does not keep them alive
      this.names[oldest] = "";
      this.values[oldest] = "";
      this.count--;
    }
  }
}

const EMPTY_BLOCK = Buffer.alloc(0);

/** Decodes the header blocks of one connection; the dynamic table carries from block to block. */
export class HpackDecoder {
  private readonly table: DynamicTable;
  /** the block being decoded, as a Buffer for its fast latin1 toString */
  private block: Buffer = EMPTY_BLOCK;
  private pos = 0;
  private huffmanOut = Buffer.allocUnsafe(256);

  constructor(
    /** our SETTINGS_HEADER_TABLE_SIZE: the peer's size updates may not exceed it */
    private readonly maxTableSize = 4096,
    /** RFC 7540 6.5.2's SETTINGS_MAX_HEADER_LIST_SIZE: name + value + 32 octets per field */
    private readonly maxHeaderListBytes = 65536,
  ) {
    this.table = new DynamicTable(maxTableSize, maxTableSize);
  }

  /** Decodes one complete header block (a HEADERS frame's fragment and its CONTINUATIONs' concatenated). */
  decode(block: Uint8Array): HeaderList {
    const bytes = Buffer.isBuffer(block) ? block : Buffer.from(block.buffer, block.byteOffset, block.byteLength);
    this.block = bytes;
    this.pos = 0;
    const end = bytes.length;
    const headers: HeaderList = [];
    let listBytes = 0;
    let fieldSeen = false;
    while (this.pos < end) {
      const first = bytes[this.pos]!;
      let name: string;
      let value: string;
      if (first >= 0x80) {
        // 1xxxxxxx: indexed field
        const index = this.readInteger(7);
        if (index === 0) throw new HpackError("HPACK: indexed field with index 0");
        if (index <= STATIC_COUNT) {
          name = STATIC_NAMES[index]!;
          value = STATIC_VALUES[index]!;
        } else {
          const i = index - STATIC_COUNT - 1;
          if (i >= this.table.count) throw this.indexError(index);
          name = this.table.name(i);
          value = this.table.value(i);
        }
      } else if (first >= 0x40) {
        // 01xxxxxx: literal with incremental indexing
        const index = this.readInteger(6);
        name = index === 0 ? this.readString() : this.nameAt(index);
        value = this.readString();
        this.table.add(name, value);
      } else if (first >= 0x20) {
        // 001xxxxx: dynamic table size update, allowed only before the first field (RFC 7541 4.2)
        if (fieldSeen) throw new HpackError("HPACK: dynamic table size update after a header field");
        const size = this.readInteger(5);
        if (size > this.maxTableSize) {
          throw new HpackError(`HPACK: dynamic table size update to ${size}, over the ${this.maxTableSize} allowed`);
        }
        this.table.setLimit(size);
        continue;
      } else {
        // 0000xxxx without indexing, 0001xxxx never indexed: the same to a decoder
        const index = this.readInteger(4);
        name = index === 0 ? this.readString() : this.nameAt(index);
        value = this.readString();
      }
      fieldSeen = true;
      listBytes += name.length + value.length + ENTRY_OVERHEAD;
      // past the limit, keep decoding (the table must stay in step) but stop collecting
      if (listBytes <= this.maxHeaderListBytes) headers.push([name, value]);
    }
    this.block = EMPTY_BLOCK;
    if (listBytes > this.maxHeaderListBytes) {
      throw new HeaderListTooLargeError(
        `HPACK: header list of ${listBytes} bytes (name + value + 32 per field) ` +
          `is over the ${this.maxHeaderListBytes} allowed`,
      );
    }
    return headers;
  }

  private nameAt(index: number): string {
    if (index <= STATIC_COUNT) return STATIC_NAMES[index]!;
    const i = index - STATIC_COUNT - 1;
    if (i >= this.table.count) throw this.indexError(index);
    return this.table.name(i);
  }

  private indexError(index: number): HpackError {
    return new HpackError(
      `HPACK: index ${index} is beyond the table (${STATIC_COUNT} static + ${this.table.count} dynamic entries)`,
    );
  }

  /** RFC 7541 5.1; the caller has checked a first byte is there */
  private readInteger(prefixBits: number): number {
    const block = this.block;
    let pos = this.pos;
    const prefixMax = (1 << prefixBits) - 1;
    let value = block[pos++]! & prefixMax;
    if (value < prefixMax) {
      this.pos = pos;
      return value;
    }
    let multiplier = 1;
    for (;;) {
      if (pos >= block.length) throw new HpackError("HPACK: header block ends inside an integer");
      const byte = block[pos++]!;
      value += (byte & 0x7f) * multiplier;
      if (value > MAX_INTEGER) throw new HpackError("HPACK: integer overflow");
      if (byte < 0x80) break;
      multiplier *= 128;
      // also stops endless zero continuation bytes
      if (multiplier > 2 ** 28) throw new HpackError("HPACK: integer overflow");
    }
    this.pos = pos;
    return value;
  }

  /** RFC 7541 5.2 */
  private readString(): string {
    const block = this.block;
    if (this.pos >= block.length) throw new HpackError("HPACK: header block ends before a string");
    const huffman = block[this.pos]! >= 0x80;
    const length = this.readInteger(7);
    const start = this.pos;
    const end = start + length;
    if (end > block.length) throw new HpackError("HPACK: header block ends inside a string");
    this.pos = end;
    if (length === 0) return "";
    if (!huffman) return block.toString("latin1", start, end);
    const maxLength = huffmanDecodedMaxLength(length);
    if (this.huffmanOut.length < maxLength) {
      this.huffmanOut = Buffer.allocUnsafe(Math.max(maxLength, this.huffmanOut.length * 2));
    }
    const decoded = huffmanDecode(block, start, end, this.huffmanOut);
    if (decoded === HUFFMAN_EOS) throw new HpackError("HPACK: Huffman-coded string contains EOS");
    if (decoded === HUFFMAN_BAD_PADDING) {
      throw new HpackError("HPACK: Huffman-coded string has padding over 7 bits or not all ones");
    }
    return this.huffmanOut.toString("latin1", 0, decoded);
  }
}

/** per name in the static table: its first index, and the index of each value it has */
const STATIC_INDEX = new Map<string, { nameIndex: number; valueIndex: Map<string, number> }>();
for (let index = STATIC_COUNT; index >= 1; index--) {
  const [name, value] = STATIC_TABLE[index]!;
  let entry = STATIC_INDEX.get(name);
  if (!entry) STATIC_INDEX.set(name, (entry = { nameIndex: index, valueIndex: new Map() }));
  entry.nameIndex = index;
  entry.valueIndex.set(value, index);
}

/** the blocks of constant header lists: the encoder keeps no state, so a list's block never changes */
const CONSTANT_BLOCKS = new WeakMap<HeaderList, Uint8Array>();

/** `list`, frozen (each field too) and encoded now for every use of it */
export function constantHeaders(list: HeaderList): HeaderList {
  for (const field of list) Object.freeze(field);
  Object.freeze(list);
  CONSTANT_BLOCKS.set(list, new HpackEncoder().encode(list));
  return list;
}

/**
 * Encodes header blocks without the dynamic table, so there is no table state to keep in
 * step with the peer's decoder: static-table matches are indexed, everything else is a
 * literal without indexing (with the static name's index when there is one), strings raw.
 * Names must already be lowercase, as HTTP/2 requires.
 */
export class HpackEncoder {
  private out = new Uint8Array(1024);

  /** A constant list (constantHeaders: every unary answer's headers and trailers) was encoded once. */
  encode(headers: HeaderList): Uint8Array {
    return CONSTANT_BLOCKS.get(headers) ?? this.encodeNow(headers);
  }

  private encodeNow(headers: HeaderList): Uint8Array {
    // per field at most: a 0x00 byte and two string lengths of up to 6 bytes each
    let bound = 0;
    for (const [name, value] of headers) bound += name.length + value.length + 13;
    if (this.out.length < bound) this.out = new Uint8Array(Math.max(bound, this.out.length * 2));
    const out = this.out;
    let pos = 0;
    for (const [name, value] of headers) {
      const staticEntry = STATIC_INDEX.get(name);
      if (staticEntry) {
        const exact = staticEntry.valueIndex.get(value);
        if (exact !== undefined) {
          pos = writeInteger(out, pos, exact, 7, 0x80);
          continue;
        }
        pos = writeInteger(out, pos, staticEntry.nameIndex, 4, 0x00);
      } else {
        out[pos++] = 0x00;
        pos = writeString(out, pos, name);
      }
      pos = writeString(out, pos, value);
    }
    return out.slice(0, pos);
  }
}

/** RFC 7541 5.1: value in a prefixBits-bit prefix, the first byte's other bits set to pattern */
function writeInteger(out: Uint8Array, pos: number, value: number, prefixBits: number, pattern: number): number {
  const prefixMax = (1 << prefixBits) - 1;
  if (value < prefixMax) {
    out[pos++] = pattern | value;
    return pos;
  }
  out[pos++] = pattern | prefixMax;
  value -= prefixMax;
  while (value >= 0x80) {
    out[pos++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  out[pos++] = value;
  return pos;
}

/** RFC 7541 5.2, raw (not Huffman-coded); chars are bytes (latin1) */
function writeString(out: Uint8Array, pos: number, text: string): number {
  pos = writeInteger(out, pos, text.length, 7, 0x00);
  for (let i = 0; i < text.length; i++) {
    const char = text.charCodeAt(i);
    if (char > 0xff) throw new TypeError(`HPACK: header string has a char over 0xff (latin1): ${JSON.stringify(text)}`);
    out[pos++] = char;
  }
  return pos;
}
