// SQLite's checkpoints, off the event loop. Left to itself, SQLite copies the write-ahead
// log into the database file (and fsyncs both) inside whichever COMMIT crosses 1,000 log
// pages: that stalled every request for up to 15 ms and was a quarter of the main thread's
// time under a stream of creates. Here a worker thread with its own connection does it:
// first while writes go on, then once more while the next write waits, so the log is wholly
// copied and SQLite starts it again from the beginning instead of letting it grow. The
// thread (a JavaScript VM of its own, about 2 MiB) ends once writes have stopped for a
// while and starts again with the next checkpoint, so an idle server holds none.
import type { Mutex } from "../../util/mutex.ts";
import { log } from "../../util/log.ts";
import type { CheckpointReply, CheckpointRequest } from "./checkpoint-worker.ts";

/**
 * The worker's code: beside this file when strata runs from source. In an executable from
 * `bun build --compile` (build/build.ts lists the worker as an entry point) this code is
 * bundled into one file at the root of Bun's embedded file system, and each entry point
 * keeps its path under src/.
 */
const WORKER_URL = import.meta.url.includes("/$bunfs/")
  ? new URL("./backends/sqlite/checkpoint-worker.ts", import.meta.url).href
  : new URL("./checkpoint-worker.ts", import.meta.url).href;

/** write transactions between checkpoints (SQLite's own default is 1,000 log pages) */
const COMMITS_PER_CHECKPOINT = 32;
/** a quieter log is checkpointed this long after its last unchecked commit */
const IDLE_CHECKPOINT_MS = 1000;
/** the thread ends this long after its last checkpoint (the next one starts it again) */
const RETIRE_AFTER_MS = 30_000;

export class WalCheckpointer {
  private worker: Worker | undefined;
  private retireTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly waiting = new Map<number, { resolve: (r: CheckpointReply) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private commits = 0;
  private cycle: Promise<void> | undefined;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  private constructor(
    private readonly name: string,
    private readonly path: string,
    /** whether checkpoints fsync (a copy that can be rebuilt need not) */
    private readonly durable: boolean,
    /** the writer's lock: the last pass of a checkpoint holds it */
    private readonly writeLock: Mutex,
    private readonly retireAfterMs: number,
  ) {}

  /** Checks on a thread that the database at `path` can be checkpointed. */
  static async start(name: string, path: string, durable: boolean, writeLock: Mutex, retireAfterMs = RETIRE_AFTER_MS): Promise<WalCheckpointer> {
    const c = new WalCheckpointer(name, path, durable, writeLock, retireAfterMs);
    try {
      await c.checkpoint();
    } catch (err) {
      c.worker?.terminate();
      throw err;
    }
    return c;
  }

  /** whether the thread is running (tests) */
  get threadRunning(): boolean {
    return this.worker !== undefined;
  }

  /** Called after each committed write transaction. */
  committed(): void {
    if (this.closed) return;
    this.commits++;
    if (this.commits >= COMMITS_PER_CHECKPOINT) return this.begin();
    this.whenIdle();
  }

  private whenIdle(): void {
    this.idleTimer ??= setTimeout(() => this.begin(), IDLE_CHECKPOINT_MS);
    this.idleTimer.unref?.();
  }

  /** Lets a running checkpoint finish, then closes the thread's connection. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.retireTimer);
    await this.cycle;
    if (this.worker) {
      await this.request({ id: 0, close: true }).catch(() => {});
      this.worker?.terminate();
      this.worker = undefined;
    }
    this.fail(new Error(`${this.name} is closed`));
  }

  private begin(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.cycle || this.closed) return;
    this.commits = 0;
    this.cycle = (async () => {
      try {
        await this.checkpoint();
        await this.writeLock.run(() => this.checkpoint());
      } catch (err) {
        // nothing is lost: the log keeps every commit until a checkpoint succeeds
        if (!this.closed) log("warn", "checkpointing the SQLite write-ahead log failed; trying again after more writes", { backend: this.name, error: String(err) });
      } finally {
        this.cycle = undefined;
        // commits made while it ran are copied later, even if no more come
        if (this.commits > 0 && !this.closed) this.whenIdle();
      }
    })();
  }

  private async checkpoint(): Promise<void> {
    const r = await this.request({ id: 0, path: this.path, durable: this.durable });
    if ("error" in r) throw new Error(`${this.name}: checkpoint failed: ${r.error}`);
  }

  private request(req: CheckpointRequest): Promise<CheckpointReply> {
    if (this.closed && !("close" in req)) return Promise.reject(new Error(`${this.name} is closed`));
    clearTimeout(this.retireTimer);
    this.retireTimer = undefined;
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.thread().postMessage({ ...req, id });
    });
  }

  /** the running thread, or a new one (it opens its connection with its first request) */
  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_URL, { type: "module" });
    worker.onmessage = (e: MessageEvent<CheckpointReply>) => {
      const w = this.waiting.get(e.data.id);
      this.waiting.delete(e.data.id);
      w?.resolve(e.data);
      if (this.waiting.size === 0 && !this.closed) this.retireLater();
    };
    worker.onerror = (e) => {
      // the next checkpoint starts a new thread
      if (this.worker === worker) this.worker = undefined;
      worker.terminate();
      this.fail(new Error(`${this.name}: the checkpoint thread failed: ${e.message}`));
    };
    this.worker = worker;
    return worker;
  }

  /** Ends the thread once it has had no checkpoint for retireAfterMs: its connection closed first. */
  private retireLater(): void {
    clearTimeout(this.retireTimer);
    this.retireTimer = setTimeout(() => {
      this.retireTimer = undefined;
      const worker = this.worker;
      if (!worker || this.cycle || this.waiting.size > 0 || this.closed) return;
      // a checkpoint from now on starts a new thread; this one ends after closing its connection
      this.worker = undefined;
      worker.onmessage = () => worker.terminate();
      worker.onerror = () => worker.terminate();
      worker.postMessage({ id: 0, close: true } satisfies CheckpointRequest);
    }, this.retireAfterMs);
    this.retireTimer.unref?.();
  }

  private fail(err: Error): void {
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }
}
