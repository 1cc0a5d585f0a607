/** Draft-length policies of the draft-chain proposer (draft-chain.ts). */

/** Chooses the draft length of each step from what happened in the previous one. */
export interface DraftLengthPolicy {
  /** Draft length of a sequence's first step. */
  initial(sequence: number): number;
  /** Draft length after a step that drafted `drafted` tokens and had `accepted` of them accepted. */
  next(sequence: number, current: number, drafted: number, accepted: number): number;
}

/** The default: grow by one after a fully accepted draft, shrink by one otherwise, within [1, kMax]. */
export function growShrinkPolicy(k: number, kMax: number): DraftLengthPolicy {
  return {
    initial: () => k,
    next: (_seq, current, drafted, accepted) => (drafted > 0 && accepted === drafted ? Math.min(kMax, current + 1) : Math.max(1, current - 1)),
  };
}
