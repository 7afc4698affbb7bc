// Where a process keeps its copy of the log's state: a directory of its own under the
// temporary directory ($TMPDIR), removed when the backend closes. A process killed
// outright leaves its directory behind; the next one to start removes such leftovers.
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqlite } from "../sqlite/sqlite-driver.ts";

const PREFIX = "strata-nats-copy-";
/** a directory younger than this may belong to a process that is still starting */
const SETTLE_MS = 60_000;

export async function makeCopyDir(): Promise<string> {
  await removeLeftovers();
  return mkdtempSync(join(tmpdir(), PREFIX));
}

async function removeLeftovers(): Promise<void> {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = join(tmpdir(), name);
    try {
      if (Date.now() - statSync(dir).mtimeMs < SETTLE_MS) continue;
      const locks = readdirSync(dir).filter((f) => f.endsWith(".lock"));
      if (!(await Promise.all(locks.map((l) => isHeld(join(dir, l))))).some(Boolean)) rmSync(dir, { recursive: true, force: true });
    } catch {
      // another process removed it first, or it is not ours to read
    }
  }
}

/** whether a live process holds the SQLite lock file (see sqlite/sqlite.ts); the OS frees it when one dies */
async function isHeld(lock: string): Promise<boolean> {
  const db = await openSqlite(lock);
  try {
    db.exec("PRAGMA busy_timeout = 0");
    db.exec("BEGIN EXCLUSIVE");
    db.exec("ROLLBACK");
    return false;
  } catch {
    return true;
  } finally {
    db.close();
  }
}
