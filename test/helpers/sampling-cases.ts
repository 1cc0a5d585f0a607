/**
 * Random rows for the sampler chain tests (CPU against the float64 reference, CUDA against the
 * CPU): awkward logits (ties, -Infinity entries, NaN / +Infinity rows, all -Infinity rows),
 * penalty contexts, logit biases and chain settings, each option alone and combined.
 */
import type { ChainRef } from './sampling-reference.js';
import { PLAIN } from './sampling-reference.js';

export type Rng = () => number;

/** Settings covering each option alone, combinations, and greedy with bias and penalties. */
export function chainSettings(vocab: number): Array<[string, ChainRef]> {
  const bias = new Map<number, number>([
    [0, 2.5],
    [Math.min(vocab - 1, 3), -Infinity],
    [Math.floor(vocab / 2), -1.25],
  ]);
  const s: Array<[string, Partial<ChainRef>]> = [
    ['temperature 1', {}],
    ['temperature 0.35', { temperature: 0.35 }],
    ['temperature 2.5', { temperature: 2.5 }],
    ['top-k 1', { topK: 1 }],
    ['top-k 5', { topK: 5 }],
    ['top-k 40', { topK: 40 }],
    ['top-k = vocab', { topK: vocab }],
    ['top-p 0.5', { topP: 0.5 }],
    ['top-p 0.93', { topP: 0.93 }],
    ['top-p 1e-9', { topP: 1e-9 }],
    ['min-p 0.05', { minP: 0.05 }],
    ['min-p 0.6', { minP: 0.6 }],
    ['min-p 1', { minP: 1 }],
    ['repeat 1.3', { repeatPenalty: 1.3 }],
    ['repeat 0.8', { repeatPenalty: 0.8 }],
    ['frequency 0.4', { frequencyPenalty: 0.4 }],
    ['presence 0.7', { presencePenalty: 0.7 }],
    ['presence -0.5, window 3', { presencePenalty: -0.5, penaltyLastN: 3 }],
    ['logit bias', { logitBias: bias }],
    ['top-k 20 + top-p 0.8 + min-p 0.02', { topK: 20, topP: 0.8, minP: 0.02 }],
    ['top-k 3 + top-p 0.7', { topK: 3, topP: 0.7 }],
    ['everything', { temperature: 0.8, topK: 50, topP: 0.9, minP: 0.01, repeatPenalty: 1.1, frequencyPenalty: 0.1, presencePenalty: 0.2, logitBias: bias }],
    ['everything, whole-context window', { temperature: 1.3, topP: 0.97, minP: 0.001, repeatPenalty: 1.5, frequencyPenalty: 0.3, presencePenalty: 0.1, penaltyLastN: -1, logitBias: bias }],
    ['greedy', { temperature: 0 }],
    ['greedy with bias and penalties', { temperature: 0, repeatPenalty: 1.4, frequencyPenalty: 0.2, presencePenalty: 0.3, logitBias: bias }],
  ];
  return s.map(([name, o]) => [name, { ...PLAIN, ...o }]);
}

/**
 * A row of logits: normal-ish values (scale 0.5..6), optionally quantised to few levels
 * (ties), with some -Infinity entries; kind 'nan', 'inf' and 'neginf' make broken rows.
 */
export function logitsRow(r: Rng, vocab: number, kind: 'plain' | 'ties' | 'sparse' | 'nan' | 'inf' | 'neginf'): Float32Array {
  const scale = 0.5 + r() * 5.5;
  const row = new Float32Array(vocab);
  for (let y = 0; y < vocab; y++) {
    const g = (r() + r() + r() - 1.5) * 2 * scale;
    row[y] = kind === 'ties' ? Math.round(g) / 2 : g;
  }
  if (kind === 'sparse') for (let y = 0; y < vocab; y++) if (r() < 0.3) row[y] = -Infinity;
  if (kind === 'nan') row[Math.floor(r() * vocab)] = NaN;
  if (kind === 'inf') row[Math.floor(r() * vocab)] = Infinity;
  if (kind === 'neginf') row.fill(-Infinity);
  return row;
}

export const ROW_KINDS = ['plain', 'ties', 'sparse', 'plain', 'ties', 'nan', 'inf', 'neginf'] as const;

/** A context of tokens for penalties: repeats of a few tokens among random ones. */
export function contextFor(r: Rng, vocab: number): number[] {
  const n = Math.floor(r() * 80);
  const favourites = [0, 1, Math.floor(r() * vocab), Math.floor(r() * vocab)].map((t) => Math.min(vocab - 1, t));
  return Array.from({ length: n }, () => (r() < 0.5 ? favourites[Math.floor(r() * 4)]! : Math.floor(r() * vocab)));
}
