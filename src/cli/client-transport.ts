// The gRPC client the command-line tools (`strata migrate --endpoint`, `strata import
// --from`) dial a strata or an etcd with: cleartext for http://, TLS for https:// with
// etcdctl's --cacert, --cert and --key, so they reach a server that demands client
// certificates; with etcdctl's --user NAME:PASSWORD they authenticate and send the token,
// for a server with authentication on.
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Auth } from "../gen/etcd/api/etcdserverpb/rpc_pb.ts";

export interface ClientTlsFiles {
  cacert?: string;
  cert?: string;
  key?: string;
  /** NAME:PASSWORD, as etcdctl's --user */
  user?: string;
}

export const CLIENT_TLS_USAGE = "[--cacert CA.pem] [--cert CLIENT.pem --key CLIENT-KEY.pem] [--user NAME:PASSWORD]";

/** etcdctl's TLS and --user flags from a command line; `--flag value` or `--flag=value`. */
export function clientTlsFlags(args: string[]): ClientTlsFiles {
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
  };
  return { cacert: flag("--cacert"), cert: flag("--cert"), key: flag("--key"), user: flag("--user") };
}

/** Throws an Error naming the flag and file when a file cannot be read or the flags do not fit the URL. */
export function grpcClientTransport(baseUrl: string, tls: ClientTlsFiles = {}): Transport {
  const secure = baseUrl.startsWith("https://");
  const given = Object.entries(tls).filter(([k, v]) => v !== undefined && k !== "user").map(([k]) => `--${k}`);
  if (!secure && given.length > 0) throw new Error(`${given.join(", ")} given for ${baseUrl}: use an https:// URL for TLS`);
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw new Error("--cert and --key go together: give both or neither");
  const read = (flag: string, path: string | undefined) => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`--${flag} ${path}: cannot read the file: ${(err as Error).message}`);
    }
  };
  const host = new URL(baseUrl).hostname.replace(/^\[|\]$/g, "");
  const options = {
    baseUrl,
    nodeOptions: secure
      ? {
        ca: read("cacert", tls.cacert),
        cert: read("cert", tls.cert),
        key: read("key", tls.key),
        // an IP address is not a TLS server name: check the certificate's IP SAN without SNI
        ...(isIP(host) ? { servername: "" } : {}),
      }
      : undefined,
  };
  const plain = createGrpcTransport(options);
  if (tls.user === undefined) return plain;
  const colon = tls.user.indexOf(":");
  if (colon <= 0) throw new Error("--user takes NAME:PASSWORD");
  const name = tls.user.slice(0, colon), password = tls.user.slice(colon + 1);
  // one token for the command's calls, asked for with its first call
  let token: Promise<string> | undefined;
  const authenticate = () =>
    (token ??= createClient(Auth, plain).authenticate({ name, password }).then((r) => r.token, (err) => {
      token = undefined;
      throw err;
    }));
  return createGrpcTransport({
    ...options,
    interceptors: [(next) => async (req) => {
      req.header.set("token", await authenticate());
      return next(req);
    }],
  });
}
