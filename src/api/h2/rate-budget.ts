// How often a connection may do something that costs strata work and gives it nothing
// (a PING, a SETTINGS, a stream reset before its answer...): a token bucket per kind, so a
// client that floods gets GOAWAY ENHANCE_YOUR_CALM naming what it flooded with, while a
// client that sends such frames as clients do never comes near the limit.

export class RateBudget {
  private tokens: number;
  private last = performance.now();

  constructor(
    /** tokens given back per second */
    readonly perSecond: number,
    /** tokens held at most: the burst allowed at once */
    readonly burst = perSecond,
  ) {
    this.tokens = burst;
  }

  /** Takes one token; false when none is left. */
  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.perSecond) / 1000);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Gives back `n` tokens (work the peer is owed: a PING after response data, a WINDOW_UPDATE after DATA). */
  refill(n: number): void {
    this.tokens = Math.min(this.burst, this.tokens + n);
  }
}
