// One SQL database as the views of the contract share it (reads.ts, writes.ts,
// history.ts, leases.ts, admin.ts, auth.ts): the driver whose faults are recognised
// once, the dialect, the read threads, the newest revision seen and the selector index
// setting. No view owns another's state; each takes this.
import { type EventsOptions, type EventsPage, StorageFault } from "../../mvcc/backend.ts";
import { EtcdError } from "../../mvcc/errors.ts";
import type { RangeQuery, RangeResult, Rev } from "../../mvcc/types.ts";
import type { Dialect } from "./dialect.ts";
import { eachCallThrough, type SqlDriver } from "./driver.ts";
import { INDEX_COMPLETE, INDEX_COMPLETE_WITH_TAIL } from "./selector-index.ts";
import { stillStarting } from "../../util/start-up.ts";

/**
 * Read threads (read-pool.ts), each with its own connection running this same code: reads
 * whose cost a client controls — ranges over many keys, history pages — are read and
 * encoded there, so the event loop keeps the writer, the watch hub and the connections.
 */
export interface ReadThreads {
  range(q: RangeQuery): Promise<RangeResult>;
  events(from: Rev, to: Rev, limit: number, opts: EventsOptions): Promise<EventsPage>;
  close(): Promise<void>;
}

export class SqlDb {
  /** the newest revision this process has seen: a read below it is a read of history */
  newest: Rev = 0n;
  /** whether writes keep the selector index (--selector-index) */
  indexing = false;
  /** whether the selector index holds every row (a database from before it gets it from `strata reindex`) */
  private indexComplete = false;
  private readonly faultListeners: Array<(f: StorageFault) => void> = [];
  /** the first damage found: told to listeners that come later too */
  private damage: StorageFault | undefined;
  /** the database, its errors of running out of space or of damage turned into StorageFaults */
  readonly driver: SqlDriver;

  constructor(
    readonly name: string,
    driver: SqlDriver,
    readonly dialect: Dialect,
    readonly threads: ReadThreads | undefined,
    /** resolves when an answer read on a thread may be given (see sqlite/sqlite.ts) */
    private readonly threadReadSettled: () => Promise<void>,
  ) {
    this.driver = this.faultsOf(driver);
  }

  /**
   * A read on a thread. Its backend there recognised any fault, but the listeners are
   * here; and the engine may have to hold the answer back (see sqlite/sqlite.ts). A thread
   * whose own connection failed (a database server back from an outage that this thread
   * has not reconnected to yet) is not the database refusing: the read is made here, on
   * the connections writes use, whose state is what clients see.
   */
  async onThread<T>(threads: ReadThreads, read: (t: ReadThreads) => Promise<T>, here: () => Promise<T>): Promise<T> {
    // a server's own reads before it listens need no thread (util/start-up.ts)
    if (stillStarting()) return here();
    try {
      const result = await read(threads);
      await this.threadReadSettled();
      return result;
    } catch (err) {
      if (err instanceof StorageFault) this.reportFault(err);
      if (err instanceof StorageFault || err instanceof EtcdError) throw err;
      return here();
    }
  }

  onFault(fn: (f: StorageFault) => void): void {
    this.faultListeners.push(fn);
    if (this.damage) fn(this.damage);
  }

  /** Tells the listeners of a fault found outside a driver call (a background check). */
  reportFault(fault: StorageFault): void {
    if (fault.kind === "corrupt") this.damage ??= fault;
    for (const fn of this.faultListeners) fn(fault);
  }

  /** Every driver call passes here: a fault is recognised once, where the database reported it. */
  private faultsOf(d: SqlDriver): SqlDriver {
    const watch = async <T>(call: () => Promise<T>): Promise<T> => {
      try {
        return await call();
      } catch (err) {
        const kind = err instanceof StorageFault ? undefined : this.dialect.fault(err);
        if (!kind) throw err;
        const fault = new StorageFault(kind, this.name, err instanceof Error ? err.message : String(err));
        this.reportFault(fault);
        throw fault;
      }
    };
    return eachCallThrough(d, watch);
  }

  /** Notes a revision read from the database; returns it. */
  saw(revision: Rev): Rev {
    if (revision > this.newest) this.newest = revision;
    return revision;
  }

  /** whether the index covers every row: read from the database until it does (`strata reindex` may complete it while strata serves) */
  async selectIndexComplete(): Promise<boolean> {
    if (!this.indexComplete) {
      const rows = await this.driver.query("SELECT num FROM meta WHERE name = 'select_index'");
      this.indexComplete = rows[0]?.num === INDEX_COMPLETE || rows[0]?.num === INDEX_COMPLETE_WITH_TAIL;
    }
    return this.indexComplete;
  }

  /** Records that the index now covers every row. */
  async completeSelectIndex(): Promise<void> {
    await this.driver.write((c) => c.run("UPDATE meta SET num = 1 WHERE name = 'select_index'"));
    this.indexComplete = true;
  }
}
