// Backend URL → backend. Each database family lives in its own module, loaded only when
// a URL of its scheme is opened: a strata on SQLite never loads (nor holds in memory) the
// PostgreSQL, MySQL or NATS driver.
import { resolve } from "node:path";
import type { Backend } from "../mvcc/backend.ts";
import { engineOf } from "./sql/engine-profiles.ts";

export interface BackendOptions {
  /** connections per pool for database servers */
  poolSize: number;
  /** writes keep the selector index (--selector-index) */
  selectorIndex?: boolean;
}

/** the URL without its password, for messages and logs */
export function redact(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:/@]+):[^@/]*@/, "$1:***@");
}

export async function openBackend(url: string, opts: BackendOptions): Promise<Backend> {
  const backend = await openFamily(url, opts);
  backend.keepSelectorIndex?.(opts.selectorIndex ?? false);
  return backend;
}

async function openFamily(url: string, opts: BackendOptions): Promise<Backend> {
  if (url.startsWith("sqlite://")) {
    const [path = ""] = url.slice("sqlite://".length).split("?");
    if (!path || path === ":memory:") {
      throw new Error(`backend ${url}: needs a file path, such as sqlite://./strata.db or sqlite:///var/lib/strata/strata.db`);
    }
    const { SqliteBackend } = await import("./sqlite/sqlite.ts");
    return SqliteBackend.open(resolve(path));
  }
  if (url.startsWith("postgres://") || url.startsWith("postgresql://")) {
    const { PostgresBackend } = await import("./sql/postgres.ts");
    return PostgresBackend.open(url, redact(url), opts.poolSize);
  }
  if (url.startsWith("mysql://") || url.startsWith("mariadb://")) {
    const { MysqlBackend } = await import("./sql/mysql.ts");
    return MysqlBackend.open(url.replace(/^mariadb:/, "mysql:"), redact(url), opts.poolSize);
  }
  if (url.startsWith("nats://")) {
    const { NatsBackend } = await import("./nats/nats-backend.ts");
    return NatsBackend.create(url, redact(url));
  }
  // the distributed engines: the rest of the URL is their wire's (PostgreSQL's or MySQL's)
  const engine = engineOf(url);
  if (engine?.profile.wire === "postgres") {
    const { PostgresBackend } = await import("./sql/postgres.ts");
    return PostgresBackend.open(engine.wireUrl, redact(url), opts.poolSize, undefined, engine.profile);
  }
  if (engine?.profile.wire === "mysql") {
    const { MysqlBackend } = await import("./sql/mysql.ts");
    return MysqlBackend.open(engine.wireUrl, redact(url), opts.poolSize, undefined, engine.profile);
  }
  throw new Error(`backend ${redact(url)}: unsupported scheme; supported: sqlite://, postgres://, mysql://, nats://, cockroachdb://, yugabytedb://, tidb://`);
}
