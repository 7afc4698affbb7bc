// A request body that carries a stream of JSON messages (etcd's gateway reads Watch and
// LeaseKeepAlive requests this way: values one after another, any whitespace between),
// cut into one value at a time. Each value is bounded in bytes while it is read, so a
// client cannot make strata hold more than one message's limit of unparsed text.

export class JsonStreamError extends Error {}

const OPEN = new Set([0x7b, 0x5b]); // { [
const CLOSE = new Set([0x7d, 0x5d]); // } ]
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/** The top-level JSON values of `chunks`, parsed; each at most `maxBytes` long. */
export async function* jsonValues(chunks: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<unknown> {
  let pieces: Uint8Array[] = [];
  let bytes = 0;
  let depth = 0;
  let inString = false;
  let escaped = false;
  for await (const chunk of chunks) {
    let start = depth > 0 ? 0 : -1;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (depth === 0) {
        if (isSpace(b)) continue;
        // Go's json.Decoder words it so; only objects (and arrays) are messages here
        if (!OPEN.has(b)) throw new JsonStreamError(`invalid character '${String.fromCharCode(b)}' looking for beginning of value`);
        start = i;
        depth = 1;
        continue;
      }
      if (inString) {
        if (escaped) escaped = false;
        else if (b === BACKSLASH) escaped = true;
        else if (b === QUOTE) inString = false;
        continue;
      }
      if (b === QUOTE) inString = true;
      else if (OPEN.has(b)) depth++;
      else if (CLOSE.has(b) && --depth === 0) {
        pieces.push(chunk.subarray(start, i + 1));
        bytes += i + 1 - start;
        if (bytes > maxBytes) throw tooLarge(maxBytes);
        const text = Buffer.concat(pieces, bytes).toString("utf8");
        pieces = [];
        bytes = 0;
        start = -1;
        yield parse(text);
      }
    }
    if (depth > 0) {
      const rest = chunk.subarray(start);
      bytes += rest.length;
      if (bytes > maxBytes) throw tooLarge(maxBytes);
      pieces.push(rest);
    }
  }
  if (depth > 0) throw new JsonStreamError("unexpected EOF");
}

/**
 * A JSON value, with integers beyond 2^53 kept exact: Go's encoding/json writes int64
 * fields (lease IDs) as bare numbers, which JSON.parse would round. Such integers become
 * strings, which protobuf's JSON mapping reads for 64-bit fields.
 */
export function parse(text: string): unknown {
  try {
    return JSON.parse(quoteLongIntegers(text));
  } catch (err) {
    throw new JsonStreamError((err as Error).message);
  }
}

/** digits a double holds exactly, at most */
const SAFE_DIGITS = 15;

function quoteLongIntegers(text: string): string {
  let out = "";
  let from = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
      continue;
    }
    if (c === QUOTE) {
      inString = true;
      continue;
    }
    if (c !== 0x2d && (c < 0x30 || c > 0x39)) continue;
    // a number: the integer ones longer than a double holds go in quotes
    let end = i + 1;
    while (end < text.length && /[0-9eE.+-]/.test(text[end]!)) end++;
    const token = text.slice(i, end);
    if (/^-?\d+$/.test(token) && token.replace("-", "").length > SAFE_DIGITS) {
      out += `${text.slice(from, i)}"${token}"`;
      from = end;
    }
    i = end - 1;
  }
  return from === 0 ? text : out + text.slice(from);
}

function tooLarge(maxBytes: number): JsonStreamError {
  return new JsonStreamError(`a JSON message exceeds ${maxBytes} bytes`);
}
