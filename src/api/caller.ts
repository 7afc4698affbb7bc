// Who makes a call, as etcd tells it: the gRPC metadata "token" (etcd's
// rpctypes.TokenFieldNameGRPC; "authorization" is its gateway's name for it), and the
// common name of the client certificate the TLS handshake verified. Read from the
// HTTP/2 request once, handed to every handler (auth-store.ts decides what it means).
import { createContextKey, type ContextValues } from "@connectrpc/connect";
import type { H2Stream } from "./h2/stream.ts";

export interface Caller {
  token?: string;
  /** the verified client certificate's subject CN */
  commonName?: string;
}

export const CALLER = createContextKey<Caller>({}, { description: "strata caller" });

export function callerOf(stream: H2Stream): Caller {
  const token = stream.headers["token"] ?? stream.headers["authorization"];
  // the certificate is looked at only when a check needs it (no token, --client-cert-auth)
  return {
    token,
    get commonName() {
      return stream.peerCommonName;
    },
  };
}

/** the caller a handler was given (Connect's and the unary path's contexts carry it alike) */
export function caller(ctx: { values: ContextValues } | undefined): Caller {
  return ctx?.values.get(CALLER) ?? {};
}
