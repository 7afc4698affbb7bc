// Backend URL → backend. Each database family lives in its own module.
import { resolve } from "node:path";
import type { Backend } from "./backend.ts";
import { SqliteBackend } from "./sql/sqlite.ts";

export function openBackend(url: string): Backend {
  if (url.startsWith("sqlite://")) {
    const path = url.slice("sqlite://".length).split("?")[0]!;
    if (!path) throw new Error(`backend ${url}: no file path; use sqlite://./strata.db or sqlite:///var/lib/strata/strata.db`);
    return new SqliteBackend(path === ":memory:" ? path : resolve(path));
  }
  throw new Error(`backend ${url}: unsupported scheme; supported: sqlite://`);
}
