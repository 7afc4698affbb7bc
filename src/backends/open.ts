// Backend URL → backend. Each database family lives in its own module.
import { resolve } from "node:path";
import type { Backend } from "./backend.ts";
import { SqliteBackend } from "./sql/sqlite.ts";

export async function openBackend(url: string): Promise<Backend> {
  if (url.startsWith("sqlite://")) {
    const path = url.slice("sqlite://".length).split("?")[0]!;
    if (!path || path === ":memory:") {
      throw new Error(`backend ${url}: needs a file path, such as sqlite://./strata.db or sqlite:///var/lib/strata/strata.db`);
    }
    return SqliteBackend.open(resolve(path));
  }
  throw new Error(`backend ${url}: unsupported scheme; supported: sqlite://`);
}
