// The thread that copies SQLite's write-ahead log back into the database file (see
// wal-checkpointer.ts). It holds its own connection and answers each request with what
// `PRAGMA wal_checkpoint(PASSIVE)` reports; a passive checkpoint never waits for locks.
import { openSqlite, type SqliteDatabase } from "./sqlite-driver.ts";

export type CheckpointRequest = { id: number; path: string; durable: boolean } | { id: number; close: true };
export type CheckpointReply = { id: number; log: number; checkpointed: number } | { id: number; closed: true } | { id: number; error: string };

declare const self: { onmessage: ((e: MessageEvent<CheckpointRequest>) => void) | null; postMessage(m: CheckpointReply): void; close(): void };

let db: SqliteDatabase | undefined;

self.onmessage = async (e) => {
  const req = e.data;
  try {
    if ("close" in req) {
      db?.close();
      self.postMessage({ id: req.id, closed: true });
      return self.close();
    }
    if (!db) {
      db = await openSqlite(req.path);
      // opening reads the log's index, which a writer may hold for a moment
      db.exec("PRAGMA busy_timeout = 5000");
      // a checkpoint fsyncs the log and the database file unless synchronous is OFF
      db.exec(`PRAGMA synchronous = ${req.durable ? "FULL" : "OFF"}`);
    }
    const row = db.prepare("PRAGMA wal_checkpoint(PASSIVE)").get();
    if (!row) throw new Error("PRAGMA wal_checkpoint answered no row");
    self.postMessage({ id: req.id, log: Number(row.log), checkpointed: Number(row.checkpointed) });
  } catch (err) {
    self.postMessage({ id: req.id, error: String(err) });
  }
};
