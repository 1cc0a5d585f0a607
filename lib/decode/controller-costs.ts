/** The goodput controller's cost model (lib/decode/controller.ts). */

/**
 * Costs (ms) as a function of a count: EMA per count, linear in between and beyond.
 * `spike`: a measurement above spike x the current mean counts as spike x the mean (a shared
 * machine's preemptions last one step and are 5-20x a step; a real change of cost still moves
 * the mean by alpha x (spike - 1) per step). Infinity: every measurement as it is.
 */
export class CostCurve {
  readonly #ema = new Map<number, number>();
  #keys: number[] = [];
  constructor(readonly alpha = 0.25, readonly spike = Infinity) {}

  observe(n: number, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    const old = this.#ema.get(n);
    if (old === undefined) this.#keys = [...this.#keys, n].sort((a, b) => a - b);
    this.#ema.set(n, old === undefined ? ms : old + this.alpha * (Math.min(ms, this.spike * old) - old));
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
   */
  estimate(n: number, priorSlope = 0): number | undefined {
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
      return v(last) + slope * (n - last);
    }
    const first = keys[0]!;
    const slope = keys.length >= 2 ? slopeOf(first, keys[1]!) : priorSlope * v(first);
    return Math.max(0, v(first) - slope * (first - n));
  }
}
