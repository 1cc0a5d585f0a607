/**
 * Log-probabilities of emitted tokens (generate({ logprobs: n })): per token, its logprob and
 * the n most likely tokens of the distribution it was chosen from. The distribution is the
 * target's softmax after temperature, softmax(logits / T) (greedy, T = 0: the raw softmax,
 * T = 1); top-k / top-p truncation is not applied, so a token's logprob is comparable across
 * settings. Computed in float64: logprob(y) = z_y / T - logsumexp(z / T).
 */

/** Largest `logprobs` (alternatives per token). */
export const MAX_LOGPROBS = 20;

export interface TokenLogprob {
  token: number;
  logprob: number;
  /** The `logprobs` most likely tokens, most likely first (ties: lower id first). */
  top: Array<{ token: number; logprob: number }>;
}

export class LogprobRecorder {
  /** Per sequence, one entry per emitted token. */
  readonly perSequence: TokenLogprob[][];

  constructor(
    readonly n: number,
    readonly temperature: number,
    sequences: number,
    readonly onEntry?: (sequence: number, entry: TokenLogprob) => void,
  ) {
    this.perSequence = Array.from({ length: sequences }, () => []);
  }

  /** Records the token `token` of sequence `s`, chosen from the logits row `row`. */
  record(s: number, row: ArrayLike<number>, token: number): void {
    const inv = this.temperature > 0 ? 1 / this.temperature : 1;
    let max = -Infinity;
    for (let i = 0; i < row.length; i++) if (row[i]! * inv > max) max = row[i]! * inv;
    let sum = 0;
    for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! * inv - max);
    const lse = max + Math.log(sum);
    const lp = (i: number) => row[i]! * inv - lse;
    // The n largest, by insertion into a sorted list (n <= 20).
    const top: number[] = [];
    for (let i = 0; i < row.length && this.n > 0; i++) {
      const x = row[i]!;
      if (top.length === this.n && !(x > row[top[top.length - 1]!]!)) continue;
      let j = top.length;
      while (j > 0 && x > row[top[j - 1]!]!) j--;
      top.splice(j, 0, i);
      if (top.length > this.n) top.pop();
    }
    const entry = { token, logprob: lp(token), top: top.map((t) => ({ token: t, logprob: lp(t) })) };
    this.perSequence[s]!.push(entry);
    this.onEntry?.(s, entry);
  }
}
