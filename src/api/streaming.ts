// Calls served by Connect (the streaming methods, and requests the unary path does not
// take: compressed or non-protobuf bodies) on one of our HTTP/2 streams, through
// Connect's universal handler interface. Each response message is written only when the
// stream has room, so a client that stops reading holds back its own call and nothing else;
// a unary call's one answer is admitted against the response budget instead, as on strata's
// own path (unary.ts).
import type { ConnectError, ContextValues } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { droppedBytes } from "../util/memory-pressure.ts";
import type { GrpcCall } from "./grpc-call.ts";
import { withGrpcWording } from "./grpc-status.ts";
import { ErrorCode } from "./h2/frames.ts";
import type { HeaderList } from "./h2/hpack.ts";
import type { Reservation, ResponseBudget } from "./response-budget.ts";

/** A unary call's answer counted in the response budget, under this kind, as on strata's own path. */
export interface Budgeted {
  budget: ResponseBudget;
  kind: string;
}

export async function serveWithConnect(handler: UniversalHandler, call: GrpcCall, contextValues: ContextValues, budgeted?: Budgeted): Promise<void> {
  const s = call.stream;
  let reservation: Reservation | undefined;
  if (budgeted) {
    try {
      reservation = await budgeted.budget.admit(budgeted.kind, s.signal, () => s.clientNotReading);
    } catch (err) {
      const e = err as ConnectError;
      return call.fail(e.code, e.rawMessage);
    }
  }
  let written = 0;
  let response: Awaited<ReturnType<UniversalHandler>>;
  try {
    const header = new Headers();
    for (const [name, value] of Object.entries(s.headers)) if (!name.startsWith(":")) header.set(name, value);
    response = await handler({
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
        written += next.value.length;
        // a budgeted (unary) answer is written whole: its bytes count in the budget instead
        if (!reservation) await s.room();
        next = await it!.next();
      }
    } catch {
      // the handler failed while writing: gRPC has no status to send mid-message
      return s.reset(ErrorCode.INTERNAL_ERROR);
    } finally {
      void it?.return?.().catch(() => {});
    }
  } finally {
    // counted until sent or dropped with the stream
    reservation?.settle(written);
    reservation?.holdUntilSent(s);
    // what the answer was made through (for gRPC's JSON codec: objects, base64 strings and
    // one JSON string, each about its size) is garbage now: a large one gets collected
    // before the next such answer is made, else a busy machine held two answers' copies
    if (reservation) droppedBytes(2 * written);
  }
  if (response.trailer) call.end(withGrpcWording(headerList(response.trailer)));
  else s.end();
}

function headerList(h: HeadersInit | undefined): HeaderList {
  return h ? [...new Headers(h)] : [];
}
