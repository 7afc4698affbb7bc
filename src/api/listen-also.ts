// A further address for the client port (etcd's --listen-client-urls may name several):
// a plain TCP listener whose connections are handed to the gRPC server's own listener,
// which does the TLS handshake, HTTP/2 and certificate reloading for them as for its own.
import * as net from "node:net";

export async function listenAlso(main: net.Server, port: number, host: string, what: string): Promise<net.Server> {
  const extra = net.createServer({ noDelay: true }, (socket) => main.emit("connection", socket));
  await new Promise<void>((resolve, reject) => {
    extra.once("error", (err: NodeJS.ErrnoException) =>
      reject(new Error(`listen ${what}: ${err.code === "EADDRINUSE" ? "address already in use" : err.message}`)));
    extra.listen(port, host, () => resolve());
  });
  return extra;
}
