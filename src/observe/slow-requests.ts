// The slow-request log, readable under load. The first slow request of an interval is
// logged in full as it happens ("request took too long", as etcd logs each one); the
// others of that interval are counted, and when it ends one line says how many, of which
// methods, and which was the slowest ("requests took too long"). Under a load that makes
// every request slow this is one line per interval, not one per request; a lone slow
// request reads as before.
import { log } from "../util/log.ts";

export class SlowRequests {
  private count = 0;
  private methods: Record<string, number> = {};
  private slowest: { ms: number; line: Record<string, unknown> } | undefined;
  /** set while an interval is under way */
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    /** requests slower than this are logged (--slow-request-threshold) */
    private readonly thresholdMs: number,
    /** at most one summary line per interval (--slow-request-interval); 0: a line per request */
    private readonly intervalMs: number,
  ) {}

  /** A finished request; `detail` is read only when its line may be written. Returns whether it was slow. */
  record(method: string, ms: number, code: string, detail: () => Record<string, unknown>): boolean {
    if (ms <= this.thresholdMs) return false;
    const line = () => ({ method, took: `${ms.toFixed(1)}ms`, "expected-duration": `${this.thresholdMs}ms`, code, ...detail() });
    if (this.intervalMs === 0 || !this.timer) {
      log("warn", "request took too long", line());
      if (this.intervalMs > 0) this.startInterval();
      return true;
    }
    this.count++;
    this.methods[method] = (this.methods[method] ?? 0) + 1;
    if (!this.slowest || ms > this.slowest.ms) this.slowest = { ms, line: line() };
    return true;
  }

  private startInterval(): void {
    this.timer = setTimeout(() => this.summarise(), this.intervalMs);
    this.timer.unref?.();
  }

  /** Ends the interval; one that counted requests starts the next at once, so sustained slowness stays one line per interval. */
  private summarise(): void {
    this.timer = undefined;
    if (this.count === 0) return;
    log("warn", "requests took too long", {
      count: this.count,
      interval: `${this.intervalMs}ms`,
      "expected-duration": `${this.thresholdMs}ms`,
      methods: this.methods,
      slowest: this.slowest!.line,
    });
    this.count = 0;
    this.methods = {};
    this.slowest = undefined;
    this.startInterval();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
