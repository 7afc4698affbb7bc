// How long a client's request waits on its database, and when a database counts as away.
// Overload is not an outage: a busy database is slow, not away, and a request queued on it
// waits its turn. A request is answered Unavailable ("the write may have been applied")
// only when its database has stopped answering:
// - an embedded database (SQLite) runs in strata's own process: it is never away, and a
//   request on it ends early only at the client's own deadline;
// - a database server (PostgreSQL, MySQL, NATS) is probed once nothing came back from it
//   for a while; while it answers its probe it is working, and a request on it takes the
//   time it needs. A request is answered Unavailable once its deadline (--request-timeout,
//   or the client's if sooner) has passed while the server was silent for SILENT_MS.
// Silence is counted in time the event loop was free to hear an answer: strata's own loop
// held up (a long commit, a large response encoded) does not make a database silent.

/** etcd's request timeout with its default election timeout (ReqTimeout: 5 s + 2 × 1 s) */
export const DEFAULT_REQUEST_TIMEOUT_MS = 7000;
/** a database server that answered nothing, probes included, for this long is away */
export const SILENT_MS = 1500;
/** a database server that answered nothing for this long is probed, and again as often while silent */
const PROBE_AFTER_MS = 500;
/** how often outstanding requests are checked */
const CHECK_MS = 100;
/** a check later than this counts only this much silence: the loop was busy, not listening */
const HEARD_MS = 250;

/** A client's request: when it arrived, and the deadline the client gave it (grpc-timeout). */
export interface Deadline {
  start: number;
  /** ms since the epoch; absent: the client waits as long as it takes */
  client?: number;
}

/** The deadline of a request arriving now; `clientMs`: the time the client gave it. */
export function requestDeadline(clientMs?: number, now = Date.now()): Deadline {
  return clientMs === undefined ? { start: now } : { start: now, client: now + clientMs };
}

/** When a request must be answered by, with our timeout; `client`: the client's deadline comes first. */
export function dueAt(d: Deadline, timeoutMs: number): { at: number; client: boolean } {
  const ours = d.start + timeoutMs;
  return d.client !== undefined && d.client <= ours ? { at: d.client, client: true } : { at: ours, client: false };
}

export interface LivenessOptions {
  /** requests on a silent database server are answered by then (--request-timeout) */
  timeoutMs: number;
  /** a cheap call the database server answers when it is working; absent: embedded, never away */
  probe?: () => Promise<unknown>;
}

interface Watched {
  deadline: Deadline;
  expire: (client: boolean) => void;
}

/** One database's liveness, and the requests waiting on it. */
export class Liveness {
  /** time the loop listened since the database last answered */
  private silentMs = 0;
  private lastCheck = Date.now();
  private probing = false;
  private probedAt = 0;
  private readonly watched = new Set<Watched>();
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly opts: LivenessOptions) {}

  get timeoutMs(): number {
    return this.opts.timeoutMs;
  }

  /** the database answered a call */
  answered(): void {
    this.silentMs = 0;
    this.lastCheck = Date.now();
  }

  /**
   * Calls expire(false) once our deadline has passed while the database server is silent,
   * or expire(true) at the client's deadline (the client has stopped waiting).
   * Returns the function that stops watching.
   */
  watch(deadline: Deadline, expire: (client: boolean) => void): () => void {
    // nothing could expire it: an embedded database and a client that waits
    if (!this.opts.probe && deadline.client === undefined) return () => {};
    const w = { deadline, expire };
    this.watched.add(w);
    // one timer for every outstanding request, not one each: this is on every call's path
    if (!this.timer) {
      this.lastCheck = Date.now();
      this.timer = setInterval(() => this.check(), CHECK_MS);
      this.timer.unref?.();
    }
    return () => this.unwatch(w);
  }

  private unwatch(w: Watched): void {
    this.watched.delete(w);
    if (this.watched.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private check(): void {
    const now = Date.now();
    this.silentMs += Math.min(Math.max(0, now - this.lastCheck), HEARD_MS);
    this.lastCheck = now;
    const probe = this.opts.probe;
    if (probe && this.silentMs >= PROBE_AFTER_MS && !this.probing && now - this.probedAt >= PROBE_AFTER_MS) {
      this.probing = true;
      this.probedAt = now;
      // an error is no answer: the silence goes on
      probe().then(() => this.answered(), () => {}).finally(() => (this.probing = false));
    }
    const silent = probe !== undefined && this.silentMs >= SILENT_MS;
    for (const w of this.watched) {
      const client = w.deadline.client !== undefined && now >= w.deadline.client;
      if (!client && !(silent && now >= w.deadline.start + this.opts.timeoutMs)) continue;
      this.unwatch(w);
      w.expire(client);
    }
  }
}
