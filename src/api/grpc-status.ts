// gRPC status messages as grpc-go (and so etcd) sends them. Clients match on these
// texts: the etcd3 npm client, on grpc-js, decodes grpc-message with decodeURI, so the
// message must be percent-encoded only where gRPC's spec says (bytes outside 0x20-0x7E,
// and "%"), not with encodeURIComponent as Connect does. Transport-level refusals are
// worded as grpc-go words them.
import type { HeaderList } from "./h2/hpack.ts";

const GRPC_WORDING: Array<[RegExp, (m: RegExpMatchArray) => string]> = [
  [/^message size (\d+) is larger than configured readMaxBytes (\d+)$/, (m) => `grpc: received message larger than max (${m[1]} vs. ${m[2]})`],
  [/^parse binary: (.*)$/, (m) => `grpc: error unmarshalling request: ${m[1]}`],
];

export function grpcPercentEncode(message: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(message)) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** Rewrites grpc-message of headers or trailers Connect made into grpc-go's words and encoding. */
export function withGrpcWording(headers: HeaderList): HeaderList {
  return headers.map(([name, value]) => {
    if (name !== "grpc-message") return [name, value];
    let message = value;
    try {
      message = decodeURIComponent(message);
    } catch {
      // not percent-encoded: keep it as it is
    }
    for (const [re, word] of GRPC_WORDING) {
      const m = message.match(re);
      if (m) message = word(m);
    }
    return [name, grpcPercentEncode(message)];
  });
}
