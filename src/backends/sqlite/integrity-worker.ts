// The thread that runs SQLite's quick_check when strata starts (sqlite.ts): it reads every
// page of the file, seconds for a large database, on a connection of its own, so a start
// need not wait for it to end.
import { openSqlite } from "./sqlite-driver.ts";

export type IntegrityRequest = { path: string };
/** the check's first line ("ok" when it found nothing), or the error that stopped it */
export type IntegrityReply = { finding: string } | { error: string };

declare const self: { onmessage: ((e: MessageEvent<IntegrityRequest>) => void) | null; postMessage(m: IntegrityReply): void; close(): void };

self.onmessage = async (e) => {
  try {
    const db = await openSqlite(e.data.path);
    try {
      db.exec("PRAGMA busy_timeout = 5000");
      // (1): stop at the first finding
      const row = db.prepare("PRAGMA quick_check(1)").get();
      self.postMessage({ finding: String(Object.values(row ?? {})[0] ?? "no answer") });
    } finally {
      db.close();
    }
  } catch (err) {
    self.postMessage({ error: (err as Error).message ?? String(err) });
  }
  self.close();
};
