// A read thread of a SQL backend (see read-pool.ts): its own connection to the database
// and the same MVCC queries as the event loop's (SqlBackend, reading only). Each read is
// one snapshot; a range asked to be encoded (RangeQuery.encode, asked when the api writes
// the response bytes itself: RangeOptions in keyspace/contract.ts) comes back as one
// transferred buffer, so the event loop neither parses rows nor builds or copies thousands
// of objects.
import { EtcdError } from "../../mvcc/errors.ts";
import { StorageFault } from "../../mvcc/backend.ts";
import { encodeResult } from "../../mvcc/kv-encoding.ts";
import type { Event, RangeResult } from "../../mvcc/types.ts";
import type { ReadReply, ReadRequest, ReadTarget } from "./read-messages.ts";
import type { Row, SqlConn, SqlDriver, SqlValue } from "./driver.ts";
import type { Dialect } from "./dialect.ts";
import { SqlBackend } from "./sql-backend.ts";
import { collectUnderMemoryPressure } from "../../util/memory-pressure.ts";
import { sqliteDialect } from "../sqlite/sqlite-dialect.ts";
import { sqliteConn, sqliteTransaction } from "../sqlite/sqlite-conn.ts";
import { openSqlite, type SqliteDatabase } from "../sqlite/sqlite-driver.ts";

declare const self: {
  onmessage: ((e: MessageEvent<ReadRequest>) => void) | null;
  postMessage(m: ReadReply, transfer?: ArrayBuffer[]): void;
};

/** Reads only: the writer is the event loop's. */
class ReadOnlyDriver implements SqlDriver {
  private readonly c: SqlConn;
  constructor(private readonly db: SqliteDatabase) {
    this.c = sqliteConn(db);
  }
  read<T>(fn: (c: SqlConn) => Promise<T>): Promise<T> {
    return sqliteTransaction(this.db, "BEGIN", () => fn(this.c));
  }
  query(sql: string, params: SqlValue[] = []): Promise<Row[]> {
    return this.c.all(sql, params);
  }
  write<T>(): Promise<T> {
    throw new Error("a read thread does not write");
  }
  exec(): Promise<void> {
    throw new Error("a read thread does not write");
  }
  async close(): Promise<void> {
    this.db.close();
  }
}

/** the most of the SQLite file a read thread maps (beyond it, pages are read as before) */
const MMAP_BYTES = 1024 * 1024 * 1024;

let backend: SqlBackend | undefined;
/** closes the thread's connection (SqlBackend.close would also try to write) */
let closeConnection: (() => Promise<void>) | undefined;

// each thread has a heap of its own: rows parsed here (a server's bytea as hex text) are
// its garbage, for it to collect when the process's memory grows
collectUnderMemoryPressure();

/**
 * One connection: a thread runs one read at a time. Only its own engine's module loads:
 * with the PostgreSQL and MySQL drivers in every thread, an idle server on SQLite with
 * one read thread was 10 MiB larger.
 */
async function open(name: string, target: ReadTarget): Promise<SqlBackend> {
  if ("postgres" in target) {
    const { openPostgresDriver, postgresDialect } = await import("./postgres.ts");
    return backendOn(name, openPostgresDriver(target.postgres, 1), postgresDialect);
  }
  if ("mysql" in target) {
    const { openMysqlDriver, mysqlDialect } = await import("./mysql.ts");
    return backendOn(name, openMysqlDriver(target.mysql, 1), mysqlDialect);
  }
  const db = await openSqlite(target.sqlite);
  // opening reads the log's index, which the writer may hold for a moment
  db.exec("PRAGMA busy_timeout = 10000");
  // pages read through a mapping instead of one read() call each: a full list of 40 MB
  // took 20,000 calls. The mapped pages are the page cache's, and memory-pressure.ts
  // leaves them out of what it collects on. The writer keeps plain reads and writes.
  db.exec(`PRAGMA mmap_size = ${MMAP_BYTES}`);
  return backendOn(name, new ReadOnlyDriver(db), sqliteDialect);
}

function backendOn(name: string, driver: SqlDriver, dialect: Dialect): SqlBackend {
  closeConnection = () => driver.close();
  return new SqlBackend(name, driver, dialect);
}

/**
 * The buffers of the events' keys and values that are theirs alone: handed over with the
 * page instead of copied (a catch-up page of 1 MB values is then never copied between
 * threads, and leaves no garbage here).
 */
function ownBuffers(events: Event[]): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  const add = (b: Uint8Array) => {
    if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.byteLength > 0) buffers.add(b.buffer as ArrayBuffer);
  };
  for (const e of events) {
    add(e.kv.value);
    if (e.prevKv) add(e.prevKv.value);
  }
  return [...buffers];
}

self.onmessage = async (e) => {
  const req = e.data;
  try {
    if ("open" in req) {
      backend = await open(req.name, req.open);
      // a selection reaches a thread only when the event loop found the index kept and complete
      backend.keepSelectorIndex(true);
      return self.postMessage({ result: true });
    }
    if ("close" in req) {
      // the pool ends the thread once it is told; the backend's own close would merge the
      // selector index's label rows, a write, which is the event loop's to do
      await closeConnection?.();
      return self.postMessage({ result: true });
    }
    if (!backend) throw new Error("the read thread has no database open");
    if ("range" in req) {
      const res: RangeResult = await backend.range(req.range);
      if (!req.range.encode) return self.postMessage({ result: res });
      const encoded = encodeResult(res, req.range.encode.keep);
      // handed over, not copied
      return self.postMessage({ result: encoded }, [encoded.encoded!.bytes.buffer as ArrayBuffer]);
    }
    const { from, to, limit, opts } = req.events;
    const page = await backend.events(from, to, limit, opts);
    self.postMessage({ result: page }, ownBuffers(page.events));
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    const code = err instanceof EtcdError ? err.code : (err as { code?: unknown }).code;
    const fault = err instanceof StorageFault ? { kind: err.kind, backend: err.backend, detail: err.detail } : undefined;
    self.postMessage({ error: { name: error.name, message: error.message, code: typeof code === "string" ? code : undefined, fault } });
  }
};
