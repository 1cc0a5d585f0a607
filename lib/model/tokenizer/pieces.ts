/**
 * Decoding shared by the tokenizers that render each token to bytes themselves (llama2.c
 * tokenizer.bin and GGUF vocabularies): every token contributes a byte string (its text as
 * UTF-8, a byte-fallback token its one raw byte, a control token nothing), possibly adjusted
 * by a leading-space rule that depends on what came before; the bytes of the whole sequence
 * are then decoded as UTF-8 together.
 *
 * `decode` and the stream decoder run the same per-token rule over the same state, and the
 * stream decoder feeds the bytes to a streaming UTF-8 decoder, so the pushed text always
 * concatenates to `decode` of the same ids, and a character split across tokens is returned
 * only once its last byte has arrived.
 */

import { type EncodeOptions, type StreamDecoder, type Tokenizer, checkContext, checkId, checkIds } from './types.js';
import { Utf8Stream, decodeUtf8 } from './utf8.js';

/** What the per-token rule may look at: the previous id and whether text has started. */
export interface PieceState {
  /** The previous token id in the sequence, -1 at the start. */
  prev: number;
  /** Whether a text-bearing (non-control) token has been seen. */
  started: boolean;
}

export abstract class BytePieceTokenizer implements Tokenizer {
  abstract readonly vocabSize: number;
  abstract readonly bosId?: number;
  abstract readonly eosIds: number[];
  abstract readonly addBosByDefault: boolean;
  abstract readonly continuationSafe: boolean;
  abstract encode(text: string, options?: EncodeOptions): number[];
  abstract tokenText(id: number): string;
  abstract tokenToId(token: string): number | undefined;

  idToToken(id: number): string {
    return this.tokenText(id);
  }

  /**
   * The bytes token `id` contributes after the tokens summarised by `state`; updates `state`
   * (prev and started) for the next token. `id` is already checked.
   */
  protected abstract pieceBytes(id: number, state: PieceState): Uint8Array;

  decode(ids: ArrayLike<number>): string {
    const list = checkIds(ids, this.vocabSize);
    const state: PieceState = { prev: -1, started: false };
    const pieces: Uint8Array[] = [];
    let total = 0;
    for (const id of list) {
      const bytes = this.pieceBytes(id, state);
      pieces.push(bytes);
      total += bytes.length;
    }
    const all = new Uint8Array(total);
    let at = 0;
    for (const p of pieces) {
      all.set(p, at);
      at += p.length;
    }
    return decodeUtf8(all);
  }

  streamDecoder(context?: ArrayLike<number>): StreamDecoder {
    const primed = checkContext(context, this.vocabSize);
    const state: PieceState = { prev: -1, started: false };
    const utf8 = new Utf8Stream();
    // The context's text is dropped; its state (and any incomplete trailing character) is kept.
    for (const id of primed) utf8.push(this.pieceBytes(id, state));
    return {
      push: (id: number): string => utf8.push(this.pieceBytes(checkId(id, this.vocabSize, 'id'), state)),
      flush: (): string => utf8.flush(),
    };
  }
}
