// Reads whose cost a client controls — ranges over many keys, counts, history pages — on
// worker threads, each with its own connection (read-worker.ts): SQLite in WAL mode runs
// readers beside the writer, and a database server's rows are parsed and encoded there,
// so the event loop keeps only the writer, the watch hub and the connections, and reads
// use every core. Reads wait in arrival order for a free thread.
import { availableParallelism } from "node:os";
import type { EventsOptions, EventsPage } from "../../mvcc/backend.ts";
import { type ErrorCode, EtcdError } from "../../mvcc/errors.ts";
import { StorageFault } from "../../mvcc/backend.ts";
import type { RangeQuery, RangeResult, Rev } from "../../mvcc/types.ts";
import type { ReadFailure, ReadReply, ReadRequest, ReadTarget } from "./read-messages.ts";

/** The worker's code: see sqlite/wal-checkpointer.ts for where it is in a compiled executable. */
const WORKER_URL = import.meta.url.includes("/$bunfs/")
  ? new URL("./backends/sql/read-worker.ts", import.meta.url).href
  : new URL("./read-worker.ts", import.meta.url).href;

/** threads: all cores but the event loop's, at least two, at most eight */
export const READ_THREADS = Math.min(8, Math.max(2, availableParallelism() - 1));
/**
 * A thread with no read for this long ends (its VM, heap and connection: about 6 MiB given
 * back); the next read that waits starts one again.
 */
const RETIRE_AFTER_MS = 30_000;

interface Job {
  request: ReadRequest;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

interface Thread {
  worker: Worker;
  job: Job | undefined;
  /** its connection is open */
  ready: boolean;
  /** ends the thread once it has been without a read for a while */
  retireTimer?: ReturnType<typeof setTimeout>;
}

/**
 * Threads start when reads wait for one, one at a time, up to `max`, and end after a while
 * without reads: each is a JavaScript VM of its own, so a strata nobody reads ranges from
 * holds none.
 */
export class ReadPool {
  private readonly threads: Thread[] = [];
  private readonly queue: Job[] = [];
  private closed = false;

  constructor(
    private readonly name: string,
    private readonly target: ReadTarget,
    private readonly max = READ_THREADS,
    private readonly retireAfterMs = RETIRE_AFTER_MS,
  ) {}

  /** threads running or starting */
  get threadCount(): number {
    return this.threads.length;
  }

  range(q: RangeQuery): Promise<RangeResult> {
    return this.run({ range: q }) as Promise<RangeResult>;
  }

  events(from: Rev, to: Rev, limit: number, opts: EventsOptions): Promise<EventsPage> {
    return this.run({ events: { from, to, limit, opts } }) as Promise<EventsPage>;
  }

  /** Lets running reads finish, fails the waiting ones, and closes every thread's connection. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new Error(`${this.name} is closed`));
    await Promise.all(this.threads.map(async (t) => {
      clearTimeout(t.retireTimer);
      await new Promise<void>((resolve) => {
        const job: Job = { request: { close: true }, resolve: () => resolve(), reject: () => resolve() };
        if (!t.job) return this.send(t, job);
        // after the running read
        const running = t.job;
        const [res, rej] = [running.resolve, running.reject];
        running.resolve = (v) => (res(v), this.send(t, job));
        // a thread whose open failed, or that died, is gone already
        running.reject = (e) => (rej(e), this.threads.includes(t) ? this.send(t, job) : resolve());
      });
      t.worker.terminate();
    }));
  }

  private run(request: ReadRequest): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error(`${this.name} is closed`));
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    for (const t of this.threads) {
      const job = t.job || this.queue.length === 0 ? undefined : this.queue.shift();
      if (job) this.send(t, job);
      if (!t.job && t.ready) t.retireTimer ??= this.retireLater(t);
    }
    if (this.queue.length > 0 && this.threads.length < this.max && this.threads.every((t) => t.ready)) this.spawn();
  }

  private send(t: Thread, job: Job): void {
    clearTimeout(t.retireTimer);
    t.retireTimer = undefined;
    t.job = job;
    t.worker.postMessage(job.request);
  }

  /** Ends an idle thread after retireAfterMs: its connection closed first, as close() does. */
  private retireLater(t: Thread): ReturnType<typeof setTimeout> {
    const timer = setTimeout(() => {
      const i = this.threads.indexOf(t);
      if (t.job || this.closed || i < 0) return;
      this.threads.splice(i, 1);
      const end = () => t.worker.terminate();
      this.send(t, { request: { close: true }, resolve: end, reject: end });
    }, this.retireAfterMs);
    timer.unref?.();
    return timer;
  }

  /** A new thread; it takes reads once it has opened the database. */
  private spawn(): void {
    const worker = new Worker(WORKER_URL, { type: "module" });
    const t: Thread = { worker, job: undefined, ready: false };
    this.threads.push(t);
    worker.onmessage = (e: MessageEvent<ReadReply>) => {
      const job = t.job;
      if (!job) return;
      t.job = undefined;
      if ("error" in e.data) job.reject(failure(e.data.error));
      else job.resolve(e.data.result);
      if (!this.closed) this.dispatch();
    };
    worker.onerror = (e) => {
      // a thread that died takes only its own read with it; the next read starts another
      const job = t.job;
      t.job = undefined;
      this.drop(t);
      job?.reject(new Error(`${this.name}: a read thread failed: ${e.message}`));
      if (!this.closed) this.dispatch();
    };
    this.send(t, {
      request: { open: this.target, name: this.name },
      resolve: () => {
        t.ready = true;
        if (!this.closed) this.dispatch();
      },
      reject: (err) => {
        this.drop(t);
        // with no thread that could open the database, the waiting reads fail with its reason
        if (this.threads.length === 0) for (const job of this.queue.splice(0)) job.reject(err);
      },
    });
  }

  private drop(t: Thread): void {
    clearTimeout(t.retireTimer);
    t.worker.terminate();
    const i = this.threads.indexOf(t);
    if (i >= 0) this.threads.splice(i, 1);
  }
}

/** the read's error as the event loop would have thrown it */
function failure(f: ReadFailure): Error {
  if (f.fault) return new StorageFault(f.fault.kind, f.fault.backend, f.fault.detail);
  if (f.name === "EtcdError") return new EtcdError(f.code as ErrorCode, f.message);
  const err = new Error(f.message) as Error & { code?: string };
  err.name = f.name;
  if (f.code) err.code = f.code;
  return err;
}
