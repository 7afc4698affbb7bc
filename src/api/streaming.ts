// Calls served by Connect (the streaming methods, and requests the unary path does not
// take: compressed or non-protobuf bodies) on one of our HTTP/2 streams, through
// Connect's universal handler interface. Each response message is written only when the
// stream has room, so a client that stops reading holds back its own call and nothing else.
import type { ContextValues } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import type { GrpcCall } from "./grpc-call.ts";
import { withGrpcWording } from "./grpc-status.ts";
import { ErrorCode } from "./h2/frames.ts";
import type { HeaderList } from "./h2/hpack.ts";

export async function serveWithConnect(handler: UniversalHandler, call: GrpcCall, contextValues: ContextValues): Promise<void> {
  const s = call.stream;
  const header = new Headers();
  for (const [name, value] of Object.entries(s.headers)) if (!name.startsWith(":")) header.set(name, value);
  const response = await handler({
    httpVersion: "2.0",
    method: s.method,
    url: `http://${s.headers[":authority"] ?? "localhost"}${s.path}`,
    header,
    body: s.body(),
    signal: s.signal,
    contextValues,
  });
  const it = response.body?.[Symbol.asyncIterator]();
  try {
    // headers follow the first message, so the handler can still set them
    let next = it ? await it.next() : undefined;
    s.respond([[":status", String(response.status)], ...headerList(response.header)]);
    while (next && !next.done && !s.closed) {
      s.write(next.value);
      await s.room();
      next = await it!.next();
    }
  } catch {
    // the handler failed while writing: gRPC has no status to send mid-message
    return s.reset(ErrorCode.INTERNAL_ERROR);
  } finally {
    void it?.return?.().catch(() => {});
  }
  if (response.trailer) call.end(withGrpcWording(headerList(response.trailer)));
  else s.end();
}

function headerList(h: HeadersInit | undefined): HeaderList {
  return h ? [...new Headers(h)] : [];
}
