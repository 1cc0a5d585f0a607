/**
 * The merge loop shared by both BPE flavours.
 *
 * Both SentencePiece-style BPE (llama2.c's run.c, llama.cpp's llm_tokenizer_spm) and
 * byte-level BPE (GPT-2, llama.cpp's llm_tokenizer_bpe) start from a list of small symbols
 * and repeatedly merge the adjacent pair with the best priority, the leftmost pair on ties,
 * until no adjacent pair may be merged. They differ only in the priority: SentencePiece uses
 * the score of the merged token (higher first), byte-level BPE the rank of the pair in the
 * merges list (lower first).
 *
 * run.c rescans every pair after each merge (quadratic in the text length). Here, as in
 * llama.cpp, symbols form a linked list and candidate pairs sit in a binary heap ordered by
 * (priority, position of the left symbol); entries made stale by an earlier merge are skipped
 * when popped. The sequence of merges is the same: at every step the best pair, leftmost on
 * ties, because positions keep their order along the list.
 */

import { ArgumentError } from '../../errors.js';

/** A candidate merge: symbols `left` and `right` (indices into the symbol arrays). */
interface Candidate {
  priority: number;
  left: number;
  right: number;
  /** Versions of the two symbols when the candidate was made; a mismatch means it is stale. */
  leftVersion: number;
  rightVersion: number;
}

/** A binary min-heap of candidates by (priority, left). */
class CandidateHeap {
  private readonly items: Candidate[] = [];

  get size(): number {
    return this.items.length;
  }

  private static before(a: Candidate, b: Candidate): boolean {
    return a.priority < b.priority || (a.priority === b.priority && a.left < b.left);
  }

  push(c: Candidate): void {
    const items = this.items;
    items.push(c);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!CandidateHeap.before(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): Candidate | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < items.length && CandidateHeap.before(items[l]!, items[best]!)) best = l;
        if (r < items.length && CandidateHeap.before(items[r]!, items[best]!)) best = r;
        if (best === i) break;
        [items[i], items[best]] = [items[best]!, items[i]!];
        i = best;
      }
    }
    return top;
  }
}

/**
 * Merges `symbols` greedily. `priorityOf(left, right)` gives the priority of merging two
 * adjacent symbols into `left + right` (lower merges first) or undefined when the pair may not
 * merge. `pinned[i]` true keeps symbol i out of every merge (byte-fallback pieces). Returns
 * the final symbols in order, each with the index of its first original symbol.
 */
export function mergeSymbols(
  symbols: readonly string[],
  priorityOf: (left: string, right: string) => number | undefined,
  pinned?: readonly boolean[],
): { texts: string[]; starts: number[] } {
  const n = symbols.length;
  if (n < 2) return { texts: symbols.slice(), starts: n === 1 ? [0] : [] };
  const text = symbols.slice();
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const version = new Int32Array(n);
  const alive = new Uint8Array(n).fill(1);
  for (let i = 0; i < n; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  const heap = new CandidateHeap();
  const consider = (left: number, right: number): void => {
    if (left < 0 || right < 0 || pinned?.[left] || pinned?.[right]) return;
    const priority = priorityOf(text[left]!, text[right]!);
    if (priority === undefined) return;
    heap.push({ priority, left, right, leftVersion: version[left]!, rightVersion: version[right]! });
  };
  for (let i = 0; i + 1 < n; i++) consider(i, i + 1);

  while (heap.size > 0) {
    const c = heap.pop()!;
    const { left, right } = c;
    // Stale: a symbol was merged away or grew since this candidate was made.
    if (!alive[left] || !alive[right] || next[left] !== right) continue;
    if (version[left] !== c.leftVersion || version[right] !== c.rightVersion) continue;
    // Merge right into left.
    text[left] = text[left]! + text[right]!;
    version[left]!++;
    alive[right] = 0;
    const after = next[right]!;
    next[left] = after;
    if (after >= 0) prev[after] = left;
    consider(prev[left]!, left);
    consider(left, after);
  }

  const texts: string[] = [];
  const starts: number[] = [];
  for (let i = 0; i >= 0; i = next[i]!) {
    texts.push(text[i]!);
    starts.push(i);
  }
  return { texts, starts };
}

/**
 * SentencePiece BPE over a scored vocabulary, as run.c's `encode` and llama.cpp's
 * llm_tokenizer_spm do it, on binary strings (UTF-8 bytes, see utf8.ts).
 */
export interface ScoredVocab {
  /** Binary text of each mergeable (normal) token -> id. Control and byte tokens are left out. */
  readonly normal: ReadonlyMap<string, number>;
  /** Score of each id (higher merges first). */
  readonly scores: ArrayLike<number>;
  /** Id of the byte-fallback token of each byte value, or -1 when the vocabulary lacks it. */
  readonly byteIds: Int32Array;
  /** Id used for a byte without a byte-fallback token; undefined: such text cannot be encoded. */
  readonly unkId: number | undefined;
}

/**
 * Encodes `chars` (one binary string per UTF-8 character, already including any space prefix):
 *  1. each character that is a token becomes that token's symbol; any other character becomes
 *     its bytes' fallback tokens `<0xNN>`, which never merge;
 *  2. adjacent symbols whose concatenation is a token merge, highest token score first
 *     (leftmost on ties), until no pair can merge.
 * Merged results are restricted to normal tokens (as in SentencePiece): a control or byte
 * token's text cannot be produced by merging ordinary text.
 */
export function encodeScored(vocab: ScoredVocab, chars: readonly string[]): number[] {
  const symbols: string[] = [];
  const pinned: boolean[] = [];
  const pinnedIds: number[] = [];
  for (const ch of chars) {
    if (vocab.normal.has(ch)) {
      symbols.push(ch);
      pinned.push(false);
      pinnedIds.push(-1);
      continue;
    }
    for (let k = 0; k < ch.length; k++) {
      const byte = ch.charCodeAt(k);
      let id = vocab.byteIds[byte]!;
      if (id < 0) {
        if (vocab.unkId === undefined) {
          const hex = byte.toString(16).toUpperCase().padStart(2, '0');
          throw new ArgumentError(`text contains byte 0x${hex}, which this vocabulary cannot encode (no token <0x${hex}> and no unknown token)`);
        }
        id = vocab.unkId;
      }
      symbols.push(ch[k]!);
      pinned.push(true);
      pinnedIds.push(id);
    }
  }
  const { normal, scores } = vocab;
  const { texts, starts } = mergeSymbols(
    symbols,
    (a, b) => {
      const id = normal.get(a + b);
      return id === undefined ? undefined : -scores[id]!;
    },
    pinned,
  );
  // A pinned symbol never merged, so its group starts (and ends) at itself.
  return texts.map((t, k) => (pinned[starts[k]!] ? pinnedIds[starts[k]!]! : normal.get(t)!));
}
