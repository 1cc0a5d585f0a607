// GGUF block-quantized weights: the float64 reference round trip, and the CPU kernel
// (lib/kernels/linear-quant.ts) against float64 references on every ISA path, with bit-identity
// over rows and threads.
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';

import { linearQuant } from '../../lib/kernels/linear-quant.js';
import { loadAddon } from '../../lib/native/loader.js';
import { QUANT_TYPES, QUANT_TYPE_NAMES, type QuantType, quantRowBytes } from '../../lib/tensor/quant-types.js';
import { toF16Bits } from '../../lib/tensor/dtype.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import { dequantizeRef, linearQuantRef, quantizeRef, roundTripBound } from '../helpers/quant-reference.js';
import { rng } from '../helpers/verify-reference.js';
import { QUANT_ISAS, useCpuIsa } from '../helpers/cpu-isa.js';

const ISAS = QUANT_ISAS;

afterEach(() => {
  delete process.env.CANOPY_CPU_ISA;
});

function randomValues(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    // Mostly normal-ish values, with some blocks scaled up or down and a few exact zeros.
    const scale = Math.floor(i / 32) % 7 === 3 ? 40 : Math.floor(i / 32) % 7 === 5 ? 0.01 : 1;
    out[i] = r() < 0.02 ? 0 : (r() + r() + r() - 1.5) * scale;
  }
  return out;
}

/** Random blocks: every code pattern, with finite f16 scales of mixed sign and size. */
function randomBlocks(type: QuantType, rows: number, inF: number, seed: number): Uint8Array {
  const r = rng(seed);
  const t = QUANT_TYPES[type];
  const bytes = new Uint8Array(rows * quantRowBytes(type, inF));
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(r() * 256);
  for (let b = 0; b < bytes.length / t.bytes; b++) {
    for (const f of t.f16At) {
      const bits = toF16Bits((r() < 0.5 ? -1 : 1) * (0.001 + 0.02 * r()));
      bytes[b * t.bytes + f] = bits & 255;
      bytes[b * t.bytes + f + 1] = bits >> 8;
    }
  }
  return bytes;
}

describe('reference quantizers round trip within the format bound', () => {
  for (const type of QUANT_TYPE_NAMES) {
    it(type, () => {
      const n = 256 * 6;
      const x = randomValues(n, 11);
      x.fill(0, 256, 512); // an all-zero super-block
      x.fill(0.75, 512, 768); // a constant one
      const y = dequantizeRef(type, quantizeRef(type, x), n);
      let worst = 0;
      let sq = 0;
      let sqBound = 0;
      for (let i = 0; i < n; i++) {
        const err = Math.abs(y[i]! - x[i]!);
        const bound = roundTripBound(type, x, i);
        if (err > bound) throw new Error(`${type}: value ${i}: ${x[i]} -> ${y[i]} (error ${err} > bound ${bound})`);
        worst = Math.max(worst, err / (bound || 1));
        sq += err * err;
        sqBound += bound * bound;
      }
      for (let i = 256; i < 512; i++) expect(Math.abs(y[i]!)).toBe(0);
      // The bound is not vacuous: quantization does lose something, and the typical error is well below the bound.
      expect(worst).toBeGreaterThan(0.2);
      expect(Math.sqrt(sq / sqBound)).toBeLessThan(0.6);
    });
  }
});

describe('linearQuant (CPU) against float64 references', () => {
  const shapes: Array<[number, number]> = [];
  for (const rows of [1, 3, 17, 64]) for (const inF of [0, 256, 512, 2816]) shapes.push([rows, inF]);
  for (const type of QUANT_TYPE_NAMES) {
    it(`${type}: rows 1, 3, 17, 64; in smallest, 256, 512, 2816; every ISA`, async () => {
      const block = QUANT_TYPES[type].block;
      const outF = 13;
      for (const [rows, in0] of shapes) {
        const inF = in0 === 0 ? block : in0;
        const wBytes = randomBlocks(type, outF, inF, rows * 7 + inF);
        const xv = randomValues(rows * inF, rows + inF);
        const kernelRef = linearQuantRef(type, wBytes, xv, rows, inF, outF, 'kernel');
        const f32Ref = linearQuantRef(type, wBytes, xv, rows, inF, outF, 'f32');
        const x = Tensor.from(xv, { shape: [rows, inF] });
        const w = Tensor.from(wBytes, { dtype: 'uint8', shape: [wBytes.length] });
        const results: Float32Array[] = [];
        for (const isa of ISAS) {
          useCpuIsa(isa);
          const y = await linearQuant(x, w, type, outF);
          const got = y.toFloat32();
          y.dispose();
          results.push(got);
          const nb = inF / block;
          for (let k = 0; k < got.length; k++) {
            const tight = (nb + 4) * 2 ** -23 * kernelRef.magnitude[k]! + 1e-30;
            const e1 = Math.abs(got[k]! - kernelRef.y[k]!);
            if (!(e1 <= tight)) throw new Error(`${type} ${isa} rows ${rows} in ${inF} [${Math.floor(k / outF)}, ${k % outF}]: ${got[k]} vs ${kernelRef.y[k]} (kernel activations; error ${e1} > ${tight})`);
            const e2 = Math.abs(got[k]! - f32Ref.y[k]!);
            const fmt = f32Ref.actBound[k]! + tight;
            if (!(e2 <= fmt)) throw new Error(`${type} ${isa} rows ${rows} in ${inF}: ${got[k]} vs ${f32Ref.y[k]} (f32 activations; error ${e2} > ${fmt})`);
          }
        }
        // The integer parts are exact, so every ISA gives the same bits.
        for (const r of results.slice(1)) expect(Buffer.from(r.buffer).equals(Buffer.from(results[0]!.buffer))).toBe(true);
        x.dispose();
        w.dispose();
      }
    });
  }
});

describe('linearQuant: bit-identical for any number of rows and threads', () => {
  for (const type of QUANT_TYPE_NAMES) {
    it(`${type}: rows 1..64 and 65..130 (row groups) match row by row, on every ISA`, async () => {
      const inF = 512;
      const outF = 21;
      const total = 130;
      const wBytes = randomBlocks(type, outF, inF, 5);
      const xv = randomValues(total * inF, 6);
      const w = Tensor.from(wBytes, { dtype: 'uint8', shape: [wBytes.length] });
      for (const isa of ISAS) {
        useCpuIsa(isa);
        const xAll = Tensor.from(xv, { shape: [total, inF] });
        const full = (await linearQuant(xAll, w, type, outF)).toFloat32();
        xAll.dispose();
        for (let m = 1; m <= 64; m++) {
          const start = (m * 37) % (total - m + 1);
          const x = Tensor.from(xv.subarray(start * inF, (start + m) * inF), { shape: [m, inF] });
          const y = await linearQuant(x, w, type, outF);
          const got = y.toFloat32();
          const want = full.subarray(start * outF, (start + m) * outF);
          if (!Buffer.from(got.buffer).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))) {
            throw new Error(`${type} ${isa}: rows [${start}, ${start + m}) computed alone differ from the same rows computed with ${total}`);
          }
          y.dispose();
          x.dispose();
        }
      }
      w.dispose();
    });
  }

  it('every type gives the same bits with 1, 2 and 3 threads (separate processes)', () => {
    const script = `
      const addon = require(process.argv[1]);
      const crypto = require('node:crypto');
      const types = ${JSON.stringify(QUANT_TYPE_NAMES.map((t) => [QUANT_TYPES[t].id, QUANT_TYPES[t].block, QUANT_TYPES[t].bytes]))};
      (async () => {
        const h = crypto.createHash('sha256');
        for (const [id, block, bytes] of types) {
          const rows = 9, inF = 768, outF = 29;
          const w = new Uint8Array(outF * inF / block * bytes);
          let s = 12345;
          for (let i = 0; i < w.length; i++) { s = (s * 1103515245 + 12345) >>> 0; w[i] = s >>> 24; }
          for (let b = 0; b < w.length / bytes; b++) { w[b * bytes] = 0x12; w[b * bytes + 1] = 0x1c; if (block === 256) { w[b * bytes + bytes - 2] = 0x12; w[b * bytes + bytes - 1] = 0x1c; w[b * bytes + 2] = 0x10; w[b * bytes + 3] = 0x1c; } }
          const x = new Float32Array(rows * inF).map((_, i) => Math.sin(i * 0.37) * (1 + (i % 5)));
          const y = new Float32Array(rows * outF);
          await addon.linearQuant({ data: x, dtype: 'f32', shape: [rows, inF] }, { data: w, dtype: 'uint8', shape: [w.length] }, id, { data: y, dtype: 'f32', shape: [rows, outF] });
          h.update(Buffer.from(y.buffer));
        }
        process.stdout.write(h.digest('hex'));
      })();`;
    const path = loadAddon().path;
    const digests = [1, 2, 3].map((threads) => {
      const r = spawnSync(process.execPath, ['-e', script, path], { env: { ...process.env, CANOPY_THREADS: String(threads) }, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`child with ${threads} threads failed: ${r.stderr}`);
      return r.stdout;
    });
    expect(digests[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(digests[1]).toBe(digests[0]);
    expect(digests[2]).toBe(digests[0]);
  });
});

describe('linearQuant: bad input', () => {
  it('names the argument', async () => {
    const x = Tensor.from(new Float32Array(2 * 48), { shape: [2, 48] });
    const w = Tensor.from(new Uint8Array(34 * 3), { dtype: 'uint8', shape: [102] });
    await expect(linearQuant(x, w, 'Q8_0', 2)).rejects.toThrow(/x\.shape\[1\].*multiple of Q8_0's block of 32/);
    const x2 = Tensor.from(new Float32Array(64), { shape: [1, 64] });
    await expect(linearQuant(x2, w, 'Q8_0', 2)).rejects.toThrow(/136 bytes/);
    await expect(linearQuant(x2, w, 'Q9_9' as QuantType, 2)).rejects.toThrow(/type/);
    x.dispose();
    x2.dispose();
    w.dispose();
  });
});
