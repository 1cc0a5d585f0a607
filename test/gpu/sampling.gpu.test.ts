/**
 * The CUDA sampler chain equals the CPU kernel: the same tokens for the same uniforms, the same
 * processed logits and distribution bit for bit, on random rows (every option alone and
 * combined, ties, -Infinity, NaN / +Infinity rows), vocabularies 1 to 128256. Runs where a
 * usable GPU is present; skipped with the reason printed where none is.
 */
import { describe, expect, it } from 'vitest';

import { samplingChain } from '../../lib/kernels/sampling.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { gpuGate } from '../helpers/gpu.js';
import { ROW_KINDS, chainSettings, contextFor, logitsRow } from '../helpers/sampling-cases.js';
import { rng } from '../helpers/verify-reference.js';

const gate = gpuGate('CUDA sampler chain');

/** Bit-equal floats, except that any NaN equals any NaN (payloads differ between devices). */
function sameFloats(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i]) && !(Number.isNaN(a[i]!) && Number.isNaN(b[i]!))) return false;
  return true;
}

describe.runIf(gate.available)('CUDA sampler chain equals the CPU kernel', () => {
  it.each([1, 7, 257, 32000, 32003, 128256])('vocab %i', async (vocab) => {
    const rows = vocab > 32003 ? 8 : vocab > 300 ? 24 : 64;
    for (const [name, chain] of chainSettings(vocab)) {
      const r = rng(vocab + name.length * 31);
      const kinds = Array.from({ length: rows }, (_, i) => ROW_KINDS[i % ROW_KINDS.length]!);
      const host = Tensor.from(Float32Array.from(kinds.flatMap((k) => Array.from(logitsRow(r, vocab, k)))), { shape: [rows, vocab] });
      const contexts = kinds.map(() => contextFor(r, vocab));
      const uniforms = Float64Array.from(kinds, () => r());
      const dev = await host.to('cuda');
      const cpu = await samplingChain(host, chain, { contexts, uniforms, probs: true, processedLogits: true });
      const gpu = await samplingChain(dev, chain, { contexts, uniforms, probs: true, processedLogits: true });
      expect(Array.from(gpu.tokens), `${name}, vocab ${vocab}`).toEqual(Array.from(cpu.tokens));
      expect(sameFloats((await gpu.processedLogits!.to('cpu')).toFloat32(), cpu.processedLogits!.toFloat32()), `${name}: processed logits`).toBe(true);
      expect(sameFloats((await gpu.probs!.to('cpu')).toFloat32(), cpu.probs!.toFloat32()), `${name}: probs`).toBe(true);
      for (const t of [dev, gpu.probs, gpu.processedLogits, cpu.probs, cpu.processedLogits]) t!.dispose();
    }
  }, 300_000);
});
