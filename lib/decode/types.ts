/**
 * Decoding strategies are a proposer plus a verifier over one shared step loop
 * (lib/decode/loop.ts). Each step, for every active sequence:
 *
 *   propose  a draft tree below the pending token (the last emitted token, not yet in the KV
 *            cache): tokens[i] with parents[i] (-1 = child of the pending token), optionally
 *            the distribution each node's children were drawn from (draftProbs, for lossless
 *            sampling; null for deterministic drafts such as n-grams or top-k expansions)
 *   forward  the target over [pending, ...draft] in ONE call with a tree mask
 *   verify   greedy (temperature 0) or SpecInfer sampling: the accepted path and the next token
 *   commit   keep the pending token and the accepted nodes in the KV cache
 *   (greedy: forward, verify and commit are one native call, Model.step)
 *
 * A chain is a tree whose parents are -1, 0, 1, ...; an empty draft is plain
 * autoregressive decoding.
 */
import type { Tensor } from '../tensor/tensor.js';

export interface DraftTree {
  /** Draft tokens, topologically ordered. */
  tokens: number[];
  /** parents[i]: index of the parent draft node, or -1 for a child of the pending token. */
  parents: number[];
  /**
   * For sampled drafts: rows[0] is the distribution the children of the pending token were
   * drawn from, rows[i + 1] the one node i's children were drawn from (each vocab-long,
   * summing to 1). Absent for deterministic drafts.
   */
  draftProbs?: Float32Array[];
  /**
   * Sampled drafts whose q stays native (a draft model's processed distributions, written by its
   * own sampled steps): q row rows[0] for the pending token's children, rows[i + 1] for node i's
   * (-1 where no child was drawn), in `tensor` ([*, vocab] f32 on the draft's device, owned by
   * the proposer and valid until its next proposal). draftProbs, when also set, wins.
   */
  q?: { tensor: Tensor; rows: number[] };
}

export interface ProposeContext {
  /** Sequence index in the batch. */
  sequence: number;
  /** Every token of the sequence so far, prompt included, pending token last. */
  tokens: readonly number[];
  /** Tokens of the prompt (a prefix of `tokens`). */
  promptLength: number;
  /** How many draft tokens the step may add (the proposer may return fewer). */
  budget: number;
  /** The sampling configuration of the generation (proposers drawing samples use it). */
  temperature: number;
}

/** Where a step's verification ended, fed back to proposers that learn. */
export interface StepFeedback {
  sequence: number;
  /** The pending token the draft hung from (row 0 of the logits). */
  pendingToken: number;
  draft: DraftTree;
  /** Accepted draft node indices, root to leaf. */
  acceptedNodes: number[];
  /** The token emitted after them. */
  nextToken: number;
  /** Target logits of the step's rows ([pending, ...draft] x vocab), on the host (sampled steps only). */
  targetLogits?: Float32Array;
  /**
   * With Proposer.wantsTopK = k: the ids of the k largest target logits of each of the step's
   * rows ([pending, ...draft] x k; larger first, ties to the lower id; -1 past a row's values).
   */
  targetTopK?: Int32Array;
}

export interface Proposer {
  readonly name: string;
  /** Called once with the prompts before decoding; `capacity` is the rows per sequence a cache needs. */
  start?(prompts: readonly (readonly number[])[], capacity: number): Promise<void> | void;
  propose(ctx: ProposeContext): Promise<DraftTree> | DraftTree;
  /** Proposals for several sequences at once (one draft forward per step for the batch); optional. */
  proposeBatch?(ctxs: ProposeContext[]): Promise<DraftTree[]>;
  /** Set when the proposer needs the target's hidden states (prediction heads). */
  readonly wantsHidden?: boolean;
  /** With wantsHidden: the final-normed hidden state of the row that produced `sequence`'s pending token. */
  observeHidden?(sequence: number, hidden: Float32Array): void;
  /** Set when feedback needs the target's top-k ids of every step row (StepFeedback.targetTopK): k. */
  readonly wantsTopK?: number;
  /** After verification (draft models roll their caches back here). */
  feedback?(fb: StepFeedback): Promise<void> | void;
  /** Frees caches. */
  dispose?(): void;
}

export const EMPTY_DRAFT: DraftTree = Object.freeze({ tokens: [], parents: [] }) as DraftTree;

/** Metrics of speculative decoding, per generation (ANCHORS.md: tau, acceptance, per position). */
export interface SpeculationStats {
  strategy: string;
  /** Draft tokens proposed. */
  drafted: number;
  /** Draft tokens accepted. */
  accepted: number;
  /** accepted / drafted. */
  acceptanceRate: number;
  /** Emitted tokens per target pass of a sequence (bonus included): tau. */
  meanAcceptedLength: number;
  /** acceptance rate by depth in the draft (index 0: the first draft token). */
  perPositionAcceptance: number[];
  /** Draft sizes the goodput controller chose (size -> sequence-steps); absent with a fixed size. */
  draftSizes?: Record<number, number>;
  /**
   * Milliseconds over every decode step: the goodput controller's choice, proposing (the
   * proposer's feedback included), the target step (forward; verifying + committing when not
   * one native call), and host work after it (bookkeeping, emission).
   */
  timeMs: { control: number; propose: number; forward: number; verify: number; host: number };
}
