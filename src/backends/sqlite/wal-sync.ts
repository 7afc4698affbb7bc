// Durable SQLite commits that do not stop the event loop. With synchronous=NORMAL, SQLite
// appends a commit to its write-ahead log without fsync (it still syncs the log and the
// database file around every checkpoint); strata then fsyncs the log on a worker thread
// and answers the writers only once that is done. Blocking in COMMIT instead cost more
// than half of each create's time on the event loop. Reads wait while a commit is not yet
// on disk, so nothing is read that a power loss could take back.
import { closeSync, fsync, openSync } from "node:fs";

export class WalSync {
  private fd: number | undefined;
  private pending: Promise<void> | undefined;
  private failure: Error | undefined;

  constructor(private readonly name: string, private readonly walPath: string) {}

  /** Puts everything committed so far on disk. After a failure every call fails. */
  sync(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    // the log exists once the first commit wrote to it
    this.fd ??= openSync(this.walPath, "r+");
    const fd = this.fd;
    const done: Promise<void> = new Promise<void>((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())))
      .catch((err) => {
        // what is on disk is unknown: stop answering until strata restarts and SQLite recovers
        this.failure = new Error(`${this.name}: writing the write-ahead log to disk failed (${String(err)}); restart strata`);
        throw this.failure;
      })
      .finally(() => {
        if (this.pending === done) this.pending = undefined;
      });
    this.pending = done;
    return done;
  }

  /**
   * A commit that is not on disk yet, or undefined. Wait for it and ask again; begin the
   * read in the same turn as the answer undefined. Throws after a failed fsync.
   */
  unsynced(): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    return this.pending?.catch(() => {});
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
