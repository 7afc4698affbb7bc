// Serves a fetch-style handler (a Hono app) over node:http, which Bun, Deno and Node all
// provide. Requests are GETs without a body, so only the method, URL and headers pass.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";

export interface HttpServer {
  /** the URL it listens on */
  url: string;
  /** Stops listening and ends open connections (a status page keeps one open). */
  close(): Promise<void>;
}

type FetchHandler = (req: Request) => Response | Promise<Response>;

export async function serveHttp(fetch: FetchHandler, listen: URL, what: string): Promise<HttpServer> {
  const server = createServer((req, res) => void answer(fetch, req, res));
  const host = listen.hostname.replace(/^\[|\]$/g, "");
  const port = Number(listen.port || 80);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(new Error(`${what} ${listen.origin}: ${err.code === "EADDRINUSE" ? "address already in use" : err.message}`)));
    server.listen(port, host, () => resolve());
  });
  return {
    url: listen.origin,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function answer(fetch: FetchHandler, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
    }
    const response = await fetch(new Request(`http://${req.headers.host ?? "localhost"}${req.url ?? "/"}`, { method: req.method, headers }));
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(req.method === "HEAD" ? undefined : Buffer.from(await response.arrayBuffer()));
  } catch (err) {
    res.writeHead(500, { "content-type": "text/plain" });
    res.end(`${(err as Error).message}\n`);
  }
}
