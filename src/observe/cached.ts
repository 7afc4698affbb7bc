// A value that is costly to read (counting every key of a large database): read at most
// once per maxAgeMs, and concurrent askers share one read.
export class Cached<T> {
  private value: T | undefined;
  private readAt = 0;
  private pending: Promise<T> | undefined;

  constructor(
    private readonly read: () => Promise<T>,
    private readonly maxAgeMs: number,
  ) {}

  get(): Promise<T> {
    if (this.value !== undefined && Date.now() - this.readAt < this.maxAgeMs) return Promise.resolve(this.value);
    this.pending ??= this.read().then(
      (v) => {
        this.value = v;
        this.readAt = Date.now();
        this.pending = undefined;
        return v;
      },
      (err) => {
        this.pending = undefined;
        throw err;
      },
    );
    return this.pending;
  }
}
