/**
 * Emitting tokens: each sequence's state (prompt, tokens so far, streamed text) and the
 * rules that end it (EOS, a stop string, maxTokens). Text is decoded incrementally; the tail
 * that could begin a stop string is held back until it cannot.
 */
import { type CanopyError, NumericError } from '../errors.js';
import { Random } from './random.js';
import { heldBack } from './stops.js';

export { heldBack } from './stops.js';

/** 'error': the model's logits for the sequence had no usable value (all NaN; see Seq.error). */
export type FinishReason = 'length' | 'eos' | 'stop' | 'abort' | 'context' | 'error';

export interface StreamingTokenizer {
  streamDecoder(context?: ArrayLike<number>): { push(id: number): string; flush(): string };
}

/** One sequence of the batch. */
export interface Seq {
  prompt: number[];
  all: number[]; // prompt + emitted tokens; the pending token is the last
  out: number[];
  text: string;
  pending: string;
  decoder: { push(id: number): string; flush(): string } | undefined;
  done: FinishReason | undefined;
  /** Why the sequence ended with 'error'. */
  error?: CanopyError;
  random: Random;
}

export interface EmitterOptions {
  maxTokens: number;
  eos: Set<number>;
  stops: string[];
  tokenizer?: StreamingTokenizer;
  onText?: (piece: string, token: number, sequence: number) => void;
}

export class Emitter {
  /** When the first token was emitted (performance.now()), 0 before. */
  firstTokenAt = 0;
  constructor(readonly o: EmitterOptions) {}

  /** A new sequence for `prompt` (index s, uniforms seeded with seed + s). */
  sequence(prompt: number[], s: number, seed: number): Seq {
    return {
      prompt,
      all: [...prompt],
      out: [],
      text: '',
      pending: '',
      decoder: this.o.tokenizer?.streamDecoder(prompt),
      done: this.o.maxTokens === 0 ? 'length' : undefined,
      random: new Random(seed + s),
    };
  }

  /** Emits one token; returns false when the sequence finished on it (the token may be cut). */
  emit(st: Seq, s: number, token: number): boolean {
    const o = this.o;
    if (!this.firstTokenAt) this.firstTokenAt = performance.now();
    if (token < 0) {
      // The argmax kernels and pick() give -1 for a row with no usable logit: the model's
      // numbers broke (NaN weights, overflow). End the sequence instead of emitting token 0.
      st.done = 'error';
      st.error = new NumericError(
        `sequence ${s}: the model's logits after ${st.all.length} tokens have no usable value (all NaN or -Infinity); check the weights (loadWeights(path, { validate: true }))`,
      );
      return false;
    }
    if (o.eos.has(token)) {
      st.done = 'eos';
      return false;
    }
    st.out.push(token);
    st.all.push(token);
    if (st.decoder) {
      st.pending += st.decoder.push(token);
      const full = st.text + st.pending;
      const hits = o.stops.map((stop) => full.indexOf(stop, Math.max(0, st.text.length - stop.length))).filter((i) => i >= 0);
      if (hits.length) {
        this.#put(st, s, full.slice(st.text.length, Math.min(...hits)), token);
        st.pending = '';
        st.done = 'stop';
        return false;
      }
      const keep = heldBack(st.pending, o.stops);
      const piece = st.pending.slice(0, st.pending.length - keep);
      st.pending = st.pending.slice(st.pending.length - keep);
      this.#put(st, s, piece, token);
    }
    if (st.out.length >= o.maxTokens) {
      st.done = 'length';
      return false;
    }
    return true;
  }

  /** At the end: the held-back text and the decoder's tail (not after a stop string). */
  flush(st: Seq, s: number): void {
    if (!st.decoder || st.done === 'stop') return;
    const tail = st.pending + st.decoder.flush();
    st.pending = '';
    this.#put(st, s, tail, -1);
  }

  #put(st: Seq, s: number, piece: string, token: number): void {
    if (!piece) return;
    st.text += piece;
    this.o.onText?.(piece, token, s);
  }
}
