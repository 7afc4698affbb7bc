/** fetch's shape of an HTTP handler (a Hono app's fetch) */
export type FetchHandler = (req: Request) => Response | Promise<Response>;
