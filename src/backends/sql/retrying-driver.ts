// Transactions run again when the engine rolled them back for a conflict (CockroachDB's
// and YugabyteDB's 40001, TiDB's write conflicts). The whole function runs again on a new
// transaction: a write batch locks the meta rows anew, reads the revision the winner left
// and numbers its revisions from there, so nothing is applied twice (the failed attempt
// was rolled back) and no revision is skipped (revisions are taken only by commits).
import { eachCallThrough, type SqlDriver } from "./driver.ts";

/** how long one call keeps retrying before the conflict is its answer */
const RETRY_MS = 5000;
/** the first pause between attempts, doubled each time up to MAX_PAUSE_MS (each drawn at random below it) */
const FIRST_PAUSE_MS = 2;
const MAX_PAUSE_MS = 100;

/** `retryable`: whether an error rolled the whole transaction back and it may run again */
export function retrying(d: SqlDriver, retryable: (err: unknown) => boolean): SqlDriver {
  const again = async <T>(call: () => Promise<T>): Promise<T> => {
    const deadline = Date.now() + RETRY_MS;
    for (let pause = FIRST_PAUSE_MS; ; pause = Math.min(pause * 2, MAX_PAUSE_MS)) {
      try {
        return await call();
      } catch (err) {
        if (!retryable(err) || Date.now() + pause > deadline) throw err;
        // at random, so processes that conflicted do not meet again at once
        await new Promise((r) => setTimeout(r, Math.random() * pause));
      }
    }
  };
  // exec too: a profile's statements outside transactions are its schema's, each safe to run twice
  return eachCallThrough(d, again);
}
