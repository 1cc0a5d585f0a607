/**
 * Speculation metrics of a generation (ANCHORS.md): drafted and accepted tokens, tau (tokens
 * emitted per target pass of a sequence), acceptance by draft depth, the time split, and the
 * draft sizes the goodput controller chose.
 */
import { treeDepths } from '../kernels/attention.js';
import type { GoodputController } from './controller.js';
import type { DraftTree, SpeculationStats } from './types.js';

export class SpeculationMetrics {
  readonly stats: SpeculationStats;
  readonly #depthDrafted: number[] = [];
  readonly #depthAccepted: number[] = [];
  #tokens = 0;
  #seqSteps = 0; // (sequence, tree step) pairs: tau is per sequence

  constructor(strategy: string) {
    this.stats = { strategy, drafted: 0, accepted: 0, acceptanceRate: 0, meanAcceptedLength: 0, perPositionAcceptance: [], timeMs: { control: 0, propose: 0, forward: 0, verify: 0, host: 0 } };
  }

  /** One sequence's draft and its accepted nodes; returns the draft's depth (levels). */
  draft(d: DraftTree, accepted: number): number {
    this.stats.drafted += d.tokens.length;
    this.stats.accepted += accepted;
    // Per depth: did the draft reach it, was a node there accepted.
    const depth = Array.from(treeDepths(d.parents));
    new Set(depth).forEach((dd) => (this.#depthDrafted[dd] = (this.#depthDrafted[dd] ?? 0) + 1));
    for (let dd = 0; dd < accepted; dd++) this.#depthAccepted[dd] = (this.#depthAccepted[dd] ?? 0) + 1;
    return depth.length ? Math.max(...depth) + 1 : 0;
  }

  /** A step with drafts: tokens emitted by `sequences` sequences (tau counts these steps). */
  step(emitted: number, sequences: number): void {
    this.#tokens += emitted;
    this.#seqSteps += sequences;
  }

  /** Any step's time split (ms). */
  time(t: SpeculationStats['timeMs']): void {
    const m = this.stats.timeMs;
    m.control += t.control;
    m.propose += t.propose;
    m.forward += t.forward;
    m.verify += t.verify;
    m.host += t.host;
  }

  /** The finished stats. */
  finish(controller: GoodputController | undefined): SpeculationStats {
    const s = this.stats;
    s.acceptanceRate = s.drafted ? s.accepted / s.drafted : 0;
    s.meanAcceptedLength = this.#seqSteps ? this.#tokens / this.#seqSteps : 0;
    s.perPositionAcceptance = this.#depthDrafted.map((n, dd) => (n ? (this.#depthAccepted[dd] ?? 0) / n : 0));
    if (controller) s.draftSizes = Object.fromEntries([...controller.chosen].sort((a, b) => a[0] - b[0]));
    return s;
  }
}
