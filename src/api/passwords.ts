// bcrypt on a thread of its own. A password check costs tens of milliseconds of CPU at
// etcd's cost 10 (bcryptjs works in pieces of up to 100 ms on the thread it runs on), and
// any client may ask for one (Authenticate): on the event loop, a burst of them would hold
// every other client's requests. Here they queue for the one thread, the queue is bounded
// (beyond it, etcd's "too many requests"), and the event loop only passes messages.
import { errors } from "../mvcc/errors.ts";
import type { PasswordReply, PasswordRequest } from "./password-worker.ts";

/**
 * The worker's code: beside this file from source; in an executable from `bun build
 * --compile` (build/build.ts lists it as an entry point) under src/ in Bun's file system.
 */
const WORKER_URL = import.meta.url.includes("/$bunfs/")
  ? new URL("./api/password-worker.ts", import.meta.url).href
  : new URL("./password-worker.ts", import.meta.url).href;

/** password hashes and checks waiting for the thread; more are refused */
const MAX_QUEUED = 64;

type Pending = { resolve: (r: PasswordReply) => void; reject: (e: Error) => void };

export class Passwords {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, Pending>();
  private nextId = 0;

  constructor(private readonly cost: number) {}

  async hash(password: string): Promise<string> {
    const r = await this.request({ id: 0, hash: password, cost: this.cost });
    if (!("hashed" in r)) throw new Error(`hashing a password failed: ${"error" in r ? r.error : "no answer"}`);
    return r.hashed;
  }

  /** whether `password` is the one `hash` was made from; a hash that is not bcrypt's matches nothing */
  async matches(password: string, hash: string): Promise<boolean> {
    const r = await this.request({ id: 0, check: password, against: hash });
    return "matches" in r && r.matches;
  }

  close(): void {
    this.worker?.terminate();
    this.worker = undefined;
    this.fail(new Error("the password thread stopped"));
  }

  private request(req: PasswordRequest): Promise<PasswordReply> {
    if (this.waiting.size >= MAX_QUEUED) return Promise.reject(errors.tooManyRequests());
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.thread().postMessage({ ...req, id });
    });
  }

  /** started with the first password: a strata without users never starts it */
  private thread(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_URL, { type: "module" });
    w.onmessage = (e: MessageEvent<PasswordReply>) => {
      const p = this.waiting.get(e.data.id);
      this.waiting.delete(e.data.id);
      p?.resolve(e.data);
    };
    w.onerror = (e) => {
      this.worker = undefined;
      this.fail(new Error(`the password thread failed: ${e.message}`));
    };
    // an idle thread does not keep the process alive
    (w as { unref?: () => void }).unref?.();
    this.worker = w;
    return w;
  }

  private fail(err: Error): void {
    for (const p of this.waiting.values()) p.reject(err);
    this.waiting.clear();
  }
}
