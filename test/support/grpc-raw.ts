// etcd's gRPC methods called directly (grpc-js with the project's generated messages), so
// a test decides the metadata a call carries — an auth token, a stale one, none — and sees
// the status as the server sent it, with no client retrying or re-authenticating on its own.
import * as grpc from "@grpc/grpc-js";
import { create, type DescMessage, fromBinary, type MessageInitShape, type MessageShape, toBinary } from "@bufbuild/protobuf";
import type { ClientTls } from "./strata.ts";

/** gRPC status names by number */
const CODES = [
  "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists", "PermissionDenied",
  "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable",
  "DataLoss", "Unauthenticated",
];

export type Outcome<T> = T | { grpcError: string };

export interface RawGrpc {
  /** one unary call; an error comes back as { grpcError: "CODE: message" } */
  unary<I extends DescMessage, O extends DescMessage>(path: string, input: I, output: O, req: MessageInitShape<I>, token?: string): Promise<Outcome<MessageShape<O>>>;
  /** a bidirectional stream: write requests, read answers as they come */
  stream<I extends DescMessage, O extends DescMessage>(path: string, input: I, output: O, token?: string): RawStream<I, O>;
  close(): void;
}

export interface RawStream<I extends DescMessage, O extends DescMessage> {
  send(req: MessageInitShape<I>): void;
  /** the answers so far */
  readonly received: Array<MessageShape<O>>;
  /** resolves once `n` answers arrived, or rejects after `ms` */
  waitFor(n: number, ms: number): Promise<void>;
  /** no more requests (a server-streaming call's one request was sent) */
  halfClose(): void;
  /** resolves with the call's status ("OK", or "CODE: message") once it ended */
  readonly status: Promise<string>;
  end(): void;
}

export function rawGrpc(endpoint: string, tls?: ClientTls): RawGrpc {
  const creds = tls ? grpc.credentials.createSsl(tls.ca, tls.key, tls.cert) : grpc.credentials.createInsecure();
  const c = new grpc.Client(endpoint, creds, tls ? { "grpc.ssl_target_name_override": "localhost" } : {});
  const metadata = (token?: string) => {
    const m = new grpc.Metadata();
    if (token !== undefined) m.set("token", token);
    return m;
  };
  return {
    unary(path, input, output, req, token) {
      return new Promise((resolve) => {
        c.makeUnaryRequest(
          path,
          (x: MessageInitShape<typeof input>) => Buffer.from(toBinary(input, create(input, x))),
          (b: Buffer) => fromBinary(output, b),
          req,
          metadata(token),
          { deadline: Date.now() + 30_000 },
          (err, res) => resolve(err ? { grpcError: `${CODES[err.code] ?? err.code}: ${err.details}` } : res!),
        );
      });
    },
    stream(path, input, output, token) {
      const call = c.makeBidiStreamRequest(
        path,
        (x: MessageInitShape<typeof input>) => Buffer.from(toBinary(input, create(input, x))),
        (b: Buffer) => fromBinary(output, b),
        metadata(token),
      );
      const received: Array<MessageShape<typeof output>> = [];
      let wake = () => {};
      call.on("data", (m: MessageShape<typeof output>) => {
        received.push(m);
        wake();
      });
      const status = new Promise<string>((resolve) => {
        call.on("status", (st: grpc.StatusObject) => resolve(st.code === 0 ? "OK" : `${CODES[st.code] ?? st.code}: ${st.details}`));
      });
      call.on("error", () => {});
      return {
        send: (req) => call.write(req),
        halfClose: () => call.end(),
        status,
        received,
        waitFor: async (n, ms) => {
          const deadline = Date.now() + ms;
          while (received.length < n) {
            if (Date.now() > deadline) throw new Error(`${received.length} of ${n} answers within ${ms} ms`);
            await new Promise<void>((r) => {
              wake = r;
              setTimeout(r, 50);
            });
          }
        },
        end: () => call.cancel(),
      };
    },
    close: () => c.close(),
  };
}
