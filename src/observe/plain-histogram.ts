// A Prometheus histogram counted in plain arrays and read out by prom-client's registry.
// prom-client's own observe checks and hashes the series' labels and turns the bucket's
// bound into a property name on every observation, and every gRPC call and every backend
// call observes one. Here a series is bound to its labels once; an observation is a scan of
// the bounds and three additions. The registry reads the series through the same method and
// in the same form as prom-client's Histogram gives them, so /metrics is the same text.
import { Histogram, type LabelValues } from "prom-client";

interface Values {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
  /** prom-client's field, which these histograms do not keep */
  exemplar?: null;
  sharedLabels: Record<string, string | number>;
}

/** what prom-client's Histogram keeps and its type declarations do not show */
interface PromFields {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  upperBounds: number[];
}

/** one labelled series: how many observations fell at or below each bound (not summed up), the rest beyond */
export class HistogramSeries {
  /** per bound, and one more past the last (+Inf) */
  private readonly counts: Float64Array;
  sum = 0;
  count = 0;
  /** whether it is in the output (from its first observation, or from the start) */
  listed = false;

  constructor(
    private readonly bounds: number[],
    readonly labels: Record<string, string | number>,
    /** lists it in the output */
    private readonly onFirst: (s: HistogramSeries) => void,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
    if (!this.listed) this.onFirst(this);
  }

  clear(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
    this.listed = false;
  }

  /** in prom-client's form: cumulative buckets, +Inf, _sum, _count */
  values(name: string, out: Values[]): void {
    let acc = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      acc += this.counts[i]!;
      out.push({ labels: { le: this.bounds[i]! }, value: acc, metricName: `${name}_bucket`, exemplar: null, sharedLabels: this.labels });
    }
    out.push(
      { labels: { le: "+Inf" }, value: this.count, metricName: `${name}_bucket`, exemplar: null, sharedLabels: this.labels },
      { labels: {}, value: this.sum, metricName: `${name}_sum`, sharedLabels: this.labels },
      { labels: {}, value: this.count, metricName: `${name}_count`, sharedLabels: this.labels },
    );
  }
}

/**
 * A prom-client Histogram (registered, named and typed as one) whose series are
 * `HistogramSeries`: take one with `series(labels)` and keep it. A series appears in the
 * output once observed, in the order first observed, as prom-client's do; one without
 * labels from the start.
 */
export class PlainHistogram<T extends string = string> extends Histogram<T> {
  private readonly shown: HistogramSeries[] = [];
  private readonly bounds: number[];
  /** the series without labels */
  readonly plain: HistogramSeries;

  constructor(config: ConstructorParameters<typeof Histogram<T>>[0]) {
    super(config);
    this.bounds = [...(this as unknown as PromFields).upperBounds];
    this.plain = this.series({} as LabelValues<T>);
    if ((config.labelNames ?? []).length === 0) this.list(this.plain);
  }

  /** the series of these labels (a new one each call: keep it) */
  series(labels: LabelValues<T>): HistogramSeries {
    return new HistogramSeries(this.bounds, labels as Record<string, string>, this.list);
  }

  private readonly list = (s: HistogramSeries): void => {
    s.listed = true;
    this.shown.push(s);
  };

  /** every series back to zero and out of the output until observed again (prom-client's reset) */
  reset(): void {
    // prom-client's constructor calls it before this class's fields are set
    if (!this.shown) return super.reset();
    for (const s of this.shown) s.clear();
    this.shown.length = 0;
  }

  /** read by the registry, in place of prom-client's own */
  async getForPromString() {
    const { name, help, type, aggregator } = this as unknown as PromFields;
    const values: Values[] = [];
    for (const s of this.shown) s.values(name, values);
    return { name, help, type, values, aggregator } as never;
  }

  async get() {
    const data = (await this.getForPromString()) as { values: Values[] };
    return {
      ...data,
      values: data.values.map(({ sharedLabels, labels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } })),
    } as never;
  }
}
