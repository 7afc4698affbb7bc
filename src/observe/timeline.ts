// The last few minutes, one point a second, for the status page's charts: requests per
// second, latency percentiles of the requests finished in that second, and watchers.
// Only unary requests count: a watch stream's duration is how long it was open.

export interface Point {
  /** end of the second, ms since the epoch */
  t: number;
  /** requests finished per second */
  rate: number;
  /** latency percentiles in ms; null for a second without requests */
  p50: number | null;
  p99: number | null;
  watchers: number;
}

/** latencies kept per second; beyond it a uniform sample of them (reservoir sampling) */
const SAMPLE = 4096;

export class Timeline {
  readonly points: Point[] = [];
  private sample: number[] = [];
  private seen = 0;
  private last = Date.now();
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly watchers: () => number,
    /** points kept */
    private readonly keep = 300,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  record(ms: number): void {
    this.seen++;
    if (this.sample.length < SAMPLE) this.sample.push(ms);
    else {
      const i = Math.floor(Math.random() * this.seen);
      if (i < SAMPLE) this.sample[i] = ms;
    }
  }

  /** Closes the current second as a point. */
  tick(now = Date.now()): void {
    const sorted = this.sample.sort((a, b) => a - b);
    const at = (q: number) => (sorted.length === 0 ? null : round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!));
    const seconds = Math.max(0.001, (now - this.last) / 1000);
    this.points.push({ t: now, rate: round(this.seen / seconds), p50: at(0.5), p99: at(0.99), watchers: this.watchers() });
    if (this.points.length > this.keep) this.points.shift();
    this.sample = [];
    this.seen = 0;
    this.last = now;
  }
}

const round = (n: number) => Math.round(n * 1000) / 1000;
