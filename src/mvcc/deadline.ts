// How long a client's request waits on its database. While the database has gone silent
// (stopped, unreachable, restarting) a request is answered within ANSWER_MS, or at the
// client's own deadline if that comes first, instead of for as long as the outage lasts.
// A database that keeps answering is working, not away: a large request on it takes the
// time it needs.

/** a request is answered by then at the latest when the database does not answer */
export const ANSWER_MS = 2000;
/** a database that answered nothing for this long is taken to be away (the SQL backends poll it every second) */
export const SILENT_MS = 1500;
/** how often outstanding requests are checked */
const CHECK_MS = 100;

/** When a request must be answered by; `client`: the client's deadline came first. */
export interface Deadline {
  at: number;
  client: boolean;
}

/** The deadline of a request arriving now; `clientMs`: the time the client gave it (grpc-timeout). */
export function requestDeadline(clientMs?: number, now = Date.now()): Deadline {
  const ours = now + ANSWER_MS;
  return clientMs !== undefined && now + clientMs < ours ? { at: now + clientMs, client: true } : { at: ours, client: false };
}

interface Watched {
  deadline: Deadline;
  expire: () => void;
}

/** One database's liveness, and the requests waiting on it. */
export class Liveness {
  private answeredAt = Date.now();
  private readonly watched = new Set<Watched>();
  private timer: ReturnType<typeof setInterval> | undefined;

  /** the database answered a call */
  answered(): void {
    this.answeredAt = Date.now();
  }

  /**
   * Calls expire once the deadline has passed and the database has been silent for
   * SILENT_MS, or at once at a client's deadline (the client has stopped waiting).
   * Returns the function that stops watching.
   */
  watch(deadline: Deadline, expire: () => void): () => void {
    const w = { deadline, expire };
    this.watched.add(w);
    // one timer for every outstanding request, not one each: this is on every call's path
    if (!this.timer) {
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
    const silent = now - this.answeredAt >= SILENT_MS;
    for (const w of this.watched) {
      if (now < w.deadline.at || !(w.deadline.client || silent)) continue;
      this.unwatch(w);
      w.expire();
    }
  }
}
