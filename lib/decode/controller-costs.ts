/** The goodput controller's cost model (lib/decode/controller.ts). */

/**
 * Costs (ms) as a function of a count: per count, an EMA of the measurements (window 1) or the
 * median of the last `window` ones (window > 1: a shared machine's preemptions, 5-20x a step,
 * and a spell of slow steps move the estimate only once they are the majority; alpha is then
 * unused); linear in between and beyond.
 */
export class CostCurve {
  readonly #ema = new Map<number, number>();
  readonly #recent = new Map<number, number[]>();
  #keys: number[] = [];
  constructor(
    readonly alpha = 0.25,
    readonly window = 1,
  ) {}

  readonly #stamp = new Map<number, number>();
  #observations = 0;

  /** Measurements so far (of any count). */
  get observations(): number {
    return this.#observations;
  }

  /** Measurements (of any count) since `n` was last measured; Infinity if never. */
  age(n: number): number {
    const t = this.#stamp.get(n);
    return t === undefined ? Infinity : this.#observations - t;
  }

  observe(n: number, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    this.#stamp.set(n, ++this.#observations);
    const old = this.#ema.get(n);
    if (old === undefined) this.#keys = [...this.#keys, n].sort((a, b) => a - b);
    if (this.window <= 1) {
      this.#ema.set(n, old === undefined ? ms : old + this.alpha * (ms - old));
      return;
    }
    const recent = this.#recent.get(n) ?? [];
    recent.push(ms);
    if (recent.length > this.window) recent.shift();
    this.#recent.set(n, recent);
    const sorted = [...recent].sort((a, b) => a - b);
    const h = sorted.length >> 1;
    this.#ema.set(n, sorted.length % 2 ? sorted[h]! : (sorted[h - 1]! + sorted[h]!) / 2);
  }

  /** Whether `n` itself has been measured. */
  has(n: number): boolean {
    return this.#ema.has(n);
  }

  get size(): number {
    return this.#ema.size;
  }

  /**
   * The estimated cost at n; undefined when nothing is measured. Between measured counts:
   * linear; beyond the largest: the slope of the two largest (at least 0); below the
   * smallest: the smallest's cost scaled down by the same slope, never below 0.
   * `proportional`: beyond the largest, at least the largest's cost scaled by n / largest (a
   * cost that grows with the count, such as a draft's, is not taken to stop growing where
   * the measurements stop); below a single measured count, its cost scaled by n / count.
   */
  estimate(n: number, priorSlope = 0, proportional = false): number | undefined {
    const exact = this.#ema.get(n);
    if (exact !== undefined) return exact;
    if (this.#ema.size === 0) return undefined;
    const keys = this.#keys;
    const v = (k: number) => this.#ema.get(k)!;
    const hi = keys.findIndex((k) => k > n);
    if (hi > 0) {
      const a = keys[hi - 1]!;
      const b = keys[hi]!;
      return v(a) + ((v(b) - v(a)) * (n - a)) / (b - a);
    }
    const slopeOf = (a: number, b: number) => Math.max(0, (v(b) - v(a)) / (b - a));
    if (hi === -1) {
      const last = keys[keys.length - 1]!;
      const slope = keys.length >= 2 ? slopeOf(keys[keys.length - 2]!, last) : priorSlope * v(last);
      const linear = v(last) + slope * (n - last);
      return proportional && last > 0 ? Math.max(linear, (v(last) * n) / last) : linear;
    }
    const first = keys[0]!;
    if (proportional && keys.length < 2) return (v(first) * n) / first;
    const slope = keys.length >= 2 ? slopeOf(first, keys[1]!) : priorSlope * v(first);
    return Math.max(0, v(first) - slope * (first - n));
  }
}
