// gRPC status messages as grpc-go (and so etcd) sends them. Clients match on these
// texts: the etcd3 npm client, on grpc-js, decodes grpc-message with decodeURI, so the
// message must be percent-encoded only where gRPC's spec says (bytes outside 0x20-0x7E,
// and "%"), not with encodeURIComponent as Connect does. Transport-level refusals are
// worded as grpc-go words them.
import type { ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";

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

function rewrite(headers: Record<string, unknown>): void {
  for (const name of Object.keys(headers)) {
    if (name.toLowerCase() !== "grpc-message") continue;
    let message = String(headers[name]);
    try {
      message = decodeURIComponent(message);
    } catch {
      // not percent-encoded: keep it as it is
    }
    for (const [re, word] of GRPC_WORDING) {
      const m = message.match(re);
      if (m) message = word(m);
    }
    headers[name] = grpcPercentEncode(message);
  }
}

/** Rewrites grpc-message in trailers (and trailers-only headers) of every response. */
export function withGrpcStatusWording<Req, Res extends ServerResponse | Http2ServerResponse>(
  handler: (req: Req, res: Res) => void,
): (req: Req, res: Res) => void {
  return (req, res) => {
    const addTrailers = res.addTrailers.bind(res) as (h: Record<string, unknown>) => void;
    (res as { addTrailers: unknown }).addTrailers = (h: Record<string, unknown>) => {
      const copy = { ...h };
      rewrite(copy);
      addTrailers(copy);
    };
    handler(req, res);
  };
}
