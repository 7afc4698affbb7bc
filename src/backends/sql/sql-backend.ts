// The MVCC store on any SQL engine: the same queries for SQLite, PostgreSQL and MySQL,
// with the differences kept in a Dialect. SqlBackend is the contract's views composed,
// one module each over one shared database (sql-db.ts): reads.ts, writes.ts (the commit
// path), history.ts, leases.ts, admin.ts and auth.ts.
import type { AuthRecord, Backend, BackendState, DbSize, EventsOptions, EventsPage, StorageFault, WriteResult, WriteTx } from "../../mvcc/backend.ts";
import type { LeaseRecord, RangeQuery, RangeResult, Rev } from "../../mvcc/types.ts";
import { SqlAdmin } from "./admin.ts";
import { SqlAuth } from "./auth.ts";
import type { Dialect } from "./dialect.ts";
import type { SqlDriver } from "./driver.ts";
import { SqlHistory } from "./history.ts";
import { SqlLeases } from "./leases.ts";
import { SqlReads } from "./reads.ts";
import { type ReadThreads, SqlDb } from "./sql-db.ts";
import { SqlWrites } from "./writes.ts";

export class SqlBackend implements Backend {
  /** the database as the views share it: its driver (faults recognised), dialect, threads */
  protected readonly db: SqlDb;
  private readonly reads: SqlReads;
  /** the commit path; a subclass may run something last inside a batch's transaction (see sqlite/log-copy.ts) */
  protected readonly writes: SqlWrites;
  private readonly history: SqlHistory;
  private readonly leaseView: SqlLeases;
  private readonly admin: SqlAdmin;
  private readonly auth: SqlAuth;

  constructor(readonly name: string, driver: SqlDriver, dialect: Dialect, threads?: ReadThreads) {
    this.db = new SqlDb(name, driver, dialect, threads, () => this.threadReadSettled());
    this.reads = new SqlReads(this.db);
    this.writes = new SqlWrites(this.db);
    this.history = new SqlHistory(this.db);
    this.leaseView = new SqlLeases(this.db);
    this.admin = new SqlAdmin(this.db);
    this.auth = new SqlAuth(this.db);
  }

  /** Resolves when an answer read on a thread may be given. */
  protected async threadReadSettled(): Promise<void> {}

  // ReadView
  range(q: RangeQuery): Promise<RangeResult> {
    return this.reads.range(q);
  }
  revisions(): Promise<{ revision: Rev; compactRevision: Rev }> {
    return this.reads.revisions();
  }

  // WriteView
  write<T>(txns: Array<(tx: WriteTx) => Promise<T>>, keys?: Uint8Array[]): Promise<WriteResult<T>[]> {
    return this.writes.write(txns, keys);
  }

  // HistoryView
  events(from: Rev, to: Rev, limit: number, opts?: EventsOptions): Promise<EventsPage> {
    return this.history.events(from, to, limit, opts);
  }
  compact(rev: Rev): Promise<void> {
    return this.history.compact(rev);
  }
  onExternalCommit(notify: () => void): () => void {
    return this.history.onExternalCommit(notify);
  }

  // LeaseView
  leaseKeys(id: Rev): Promise<Uint8Array[]> {
    return this.leaseView.leaseKeys(id);
  }
  leases(): Promise<LeaseRecord[]> {
    return this.leaseView.leases();
  }
  lease(id: Rev): Promise<LeaseRecord | undefined> {
    return this.leaseView.lease(id);
  }
  renewLease(id: Rev, now: number): Promise<Rev> {
    return this.leaseView.renewLease(id, now);
  }
  expiredLeases(now: number): Promise<Rev[]> {
    return this.leaseView.expiredLeases(now);
  }

  // AdminView
  open(): Promise<BackendState> {
    return this.admin.open();
  }
  close(): Promise<void> {
    return this.admin.close();
  }
  size(): Promise<DbSize> {
    return this.admin.size();
  }
  defragment(): Promise<void> {
    return this.admin.defragment();
  }
  onFault(fn: (f: StorageFault) => void): void {
    this.admin.onFault(fn);
  }
  selectorIndex(): Promise<"off" | "complete" | "incomplete"> {
    return this.admin.selectorIndex();
  }
  keepSelectorIndex(on: boolean): void {
    this.admin.keepSelectorIndex(on);
  }
  buildSelectIndex(progress?: (rows: number) => void): Promise<number> {
    return this.admin.buildSelectIndex(progress);
  }

  // AuthView
  readAuth(): Promise<AuthRecord | undefined> {
    return this.auth.readAuth();
  }
  authRevision(): Promise<Rev> {
    return this.auth.authRevision();
  }
  writeAuth(expected: Rev, next: AuthRecord): Promise<boolean> {
    return this.auth.writeAuth(expected, next);
  }
}
