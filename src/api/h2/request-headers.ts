// A request's header list checked as RFC 9113 §8.2–8.3 requires of a server: a malformed
// request is a stream error of type PROTOCOL_ERROR (§8.1.1), never served. Go's net/http2
// (under etcd) applies the same rules.
import type { HeaderList } from "./hpack.ts";

const REQUEST_PSEUDO = new Set([":method", ":scheme", ":authority", ":path"]);
/** §8.2.2: meaningful only to HTTP/1.x connections */
const CONNECTION_SPECIFIC = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

/**
 * The request headers by name (values of a repeated name joined with ", "), or why the
 * list is malformed. `trailers`: the list ends a request body, where no pseudo-header may be.
 */
export function checkRequestHeaders(list: HeaderList, trailers = false): Record<string, string> | string {
  const headers: Record<string, string> = {};
  let regularSeen = false;
  for (const [name, value] of list) {
    const problem = fieldProblem(name, value);
    if (problem) return problem;
    if (name.startsWith(":")) {
      if (trailers) return `pseudo-header ${name} in trailers`;
      if (regularSeen) return `pseudo-header ${name} after a regular header`;
      if (name === ":status") return "response pseudo-header :status in a request";
      if (!REQUEST_PSEUDO.has(name)) return `unknown pseudo-header ${name}`;
      if (headers[name] !== undefined) return `pseudo-header ${name} repeated`;
      headers[name] = value;
      continue;
    }
    regularSeen = true;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific header ${name}`;
    if (name === "te" && value !== "trailers") return `te header other than "trailers"`;
    const had = headers[name];
    headers[name] = had === undefined ? value : `${had}, ${value}`;
  }
  if (trailers) return headers;
  if (headers[":method"] === "CONNECT") {
    // §8.5: CONNECT names only an authority
    if (headers[":scheme"] !== undefined || headers[":path"] !== undefined) return "CONNECT with :scheme or :path";
    if (!headers[":authority"]) return "CONNECT without :authority";
    return headers;
  }
  for (const required of [":method", ":scheme", ":path"]) {
    if (!headers[required]) return `no ${required}`;
  }
  return headers;
}

/** §8.2.1: what a field's name and value may not contain */
function fieldProblem(name: string, value: string): string | undefined {
  if (name.length === 0) return "empty header name";
  for (let i = name.startsWith(":") ? 1 : 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c <= 0x20 || (c >= 0x41 && c <= 0x5a) || c >= 0x7f || c === 0x3a) {
      return c >= 0x41 && c <= 0x5a ? `uppercase header name ${JSON.stringify(name)}` : `header name ${JSON.stringify(name)} with a character not allowed`;
    }
  }
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return `header ${name} with NUL, CR or LF in its value`;
  }
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(value.length - 1);
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return `header ${name} with whitespace around its value`;
  return undefined;
}
