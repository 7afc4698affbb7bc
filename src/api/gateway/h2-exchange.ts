// A plain HTTP request over HTTP/2 on the client port (curl --http2, a browser over TLS
// with ALPN "h2"): not gRPC, so it goes to the same fetch-style handler as HTTP/1.1. The
// stream's flow control bounds what the client can send; the response is written a piece
// at a time as the stream has room, so a client that stops reading holds back only itself.
import { ErrorCode } from "../h2/frames.ts";
import type { HeaderList } from "../h2/hpack.ts";
import type { H2Stream } from "../h2/stream.ts";
import type { FetchHandler } from "./fetch-handler.ts";

/** headers HTTP/2 forbids in a response (RFC 9113 §8.2.2) */
const CONNECTION_SPECIFIC = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"]);

export async function serveHttpOnStream(stream: H2Stream, fetch: FetchHandler, scheme: "http" | "https"): Promise<void> {
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  try {
    const response = await fetch(toRequest(stream, scheme));
    const headers: HeaderList = [[":status", String(response.status)]];
    for (const [name, value] of response.headers) if (!CONNECTION_SPECIFIC.has(name)) headers.push([name, value]);
    stream.respond(headers);
    if (response.body && stream.method !== "HEAD") {
      const body = (reader = response.body.getReader());
      // a client gone while its stream waits for the next message ends that wait
      stream.onClose(() => void body.cancel().catch(() => {}));
      while (!stream.closed) {
        const { done, value } = await reader.read();
        if (done) break;
        stream.write(value);
        await stream.room();
      }
    }
    stream.end();
  } catch {
    stream.reset(ErrorCode.INTERNAL_ERROR);
  } finally {
    if (stream.closed) void reader?.cancel().catch(() => {});
  }
}

function toRequest(stream: H2Stream, scheme: string): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(stream.headers)) if (!name.startsWith(":")) headers.set(name, value);
  const url = `${scheme}://${stream.headers[":authority"] ?? "localhost"}${stream.path}`;
  const method = stream.method;
  if (method === "GET" || method === "HEAD") return new Request(url, { method, headers, signal: stream.signal });
  const it = stream.body();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await it.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    cancel() {
      void it.return(undefined);
    },
  }, { highWaterMark: 0 });
  return new Request(url, { method, headers, body, signal: stream.signal, duplex: "half" } as RequestInit);
}
