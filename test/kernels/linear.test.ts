/**
 * The CPU linear layer (csrc/cpu/linear_tiles.h) for f32, f16 and bf16 weights on every ISA
 * path (CANOPY_CPU_ISA: the best the CPU has, avx2, portable; neon and portable on arm64):
 * - against a float64 reference on odd shapes, within the error bound of the summation order
 *   the header states (tight enough that one wrong or missing term fails);
 * - bit-identity: every row computed alone (M = 1) equals the same row inside M = 2..64
 *   batches, and the outputs do not change with the thread count (speculative decoding's
 *   exact greedy equality rests on this);
 * - bias, accumulate, and bad arguments.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { linear } from '../../lib/kernels/linear.js';
import { native } from '../../lib/native/loader.js';
import { checkThreadsOption, getThreads, setThreads } from '../../lib/native/threads.js';
import { Tensor } from '../../lib/tensor/tensor.js';
import type { FloatDType } from '../../lib/tensor/dtype.js';
import { randomValues } from '../helpers/attention-reference.js';
import { describeBadInputs } from '../helpers/bad-inputs.js';

const DTYPES: FloatDType[] = ['f32', 'f16', 'bf16'];
const hasAvx512 = ['avx512f', 'avx512bw', 'avx512vl', 'avx512dq'].every((f) => native().cpuInfo().features.includes(f));
const ISAS = [...(hasAvx512 ? ['avx512'] : []), ...(process.arch === 'x64' ? ['avx2'] : []), ...(process.arch === 'arm64' ? ['neon'] : []), 'portable'];
const initialThreads = getThreads();

function useIsa(isa: string): void {
  if (isa === 'avx512') delete process.env.CANOPY_CPU_ISA;
  else process.env.CANOPY_CPU_ISA = isa;
}
afterEach(() => {
  delete process.env.CANOPY_CPU_ISA;
  setThreads(initialThreads);
});
afterAll(() => setThreads(initialThreads));

async function weights(out: number, inDim: number, dtype: FloatDType, seed: number): Promise<{ w: Tensor; values: Float32Array }> {
  let w = Tensor.from(randomValues(out * inDim, seed), { shape: [out, inDim] });
  if (dtype !== 'f32') {
    const c = await w.cast(dtype);
    w.dispose();
    w = c;
  }
  return { w, values: w.toFloat32() }; // the stored values, decoded exactly
}

/**
 * float64 y = x w^T + bias, and the bound on |kernel - reference| for its summation order:
 * each lane sums in/L products in sequence (L >= 8 lanes), a tree of log2(L) <= 4 levels
 * joins the lanes, then the tail, bias and accumulate add: at most (in/8 + 8) roundings of
 * partial sums bounded by sum |x_i w_i| (+ |bias| + |y0|), each within 2^-24 relative.
 */
function reference(x: Float32Array, w: Float32Array, rows: number, inDim: number, out: number, bias?: Float32Array, y0?: Float32Array) {
  const ref = new Float64Array(rows * out);
  const bound = new Float64Array(rows * out);
  const u = 2 ** -24;
  for (let n = 0; n < rows; n++) {
    for (let o = 0; o < out; o++) {
      let s = 0;
      let a = 0;
      for (let i = 0; i < inDim; i++) {
        const p = x[n * inDim + i]! * w[o * inDim + i]!;
        s += p;
        a += Math.abs(p);
      }
      const b = bias ? bias[o]! : 0;
      const y = y0 ? y0[n * out + o]! : 0;
      ref[n * out + o] = s + b + y;
      bound[n * out + o] = (Math.ceil(inDim / 8) + 8) * u * (a + Math.abs(b) + Math.abs(y)) + 1e-30;
    }
  }
  return { ref, bound };
}

function firstMismatches(got: Float32Array, ref: Float64Array, bound: Float64Array, limit = 5): string[] {
  const out: string[] = [];
  for (let i = 0; i < got.length && out.length < limit; i++) {
    if (!(Math.abs(got[i]! - ref[i]!) <= bound[i]!)) out.push(`[${i}] got ${got[i]} want ${ref[i]} (bound ${bound[i]!.toExponential(2)})`);
  }
  return out;
}

describe('linear against the float64 reference (odd shapes)', () => {
  const INS = [1, 3, 17, 100, 264, 1032, 2816];
  const OUTS = [1, 7, 33, 257];
  const cases = ISAS.flatMap((isa) => DTYPES.map((dtype) => ({ isa, dtype })));
  it.each(cases)('$dtype on $isa', async ({ isa, dtype }) => {
    useIsa(isa);
    let seed = 100;
    for (const inDim of INS) {
      for (const out of OUTS) {
        const rows = (inDim + out) % 2 === 0 ? 3 : 5;
        const { w, values } = await weights(out, inDim, dtype, seed++);
        const xv = randomValues(rows * inDim, seed++);
        const bv = randomValues(out, seed++);
        const x = Tensor.from(xv, { shape: [rows, inDim] });
        const bias = Tensor.from(bv, { shape: [out] });
        const y = await linear(x, w, { bias });
        const { ref, bound } = reference(xv, values, rows, inDim, out, bv);
        expect(firstMismatches(y.toFloat32(), ref, bound), `in ${inDim} out ${out} rows ${rows}`).toEqual([]);
        // accumulate: y + (x w^T + bias)
        const y0 = Float32Array.from(y.toFloat32());
        await linear(x, w, { bias, out: y, accumulate: true });
        const acc = reference(xv, values, rows, inDim, out, bv, y0);
        expect(firstMismatches(y.toFloat32(), acc.ref, acc.bound), `accumulate: in ${inDim} out ${out}`).toEqual([]);
        [w, x, bias, y].forEach((t) => t.dispose());
      }
    }
  });

  it('the bound is tight enough to see one wrong term', async () => {
    // Negative control: dropping one product from the reference must exceed the bound
    // somewhere (else the test above could not see a kernel that skips an element).
    const inDim = 2816;
    const out = 33;
    const { w, values } = await weights(out, inDim, 'f32', 5);
    const xv = randomValues(3 * inDim, 6);
    const x = Tensor.from(xv, { shape: [3, inDim] });
    const y = (await linear(x, w)).toFloat32();
    const wrong = Float32Array.from(values);
    for (let o = 0; o < out; o++) wrong[o * inDim + 1234] = 0;
    const { ref, bound } = reference(xv, wrong, 3, inDim, out);
    expect(firstMismatches(y, ref, bound, 1000).length).toBeGreaterThan(out);
    [w, x].forEach((t) => t.dispose());
  });
});

describe('bit-identical rows for M = 1..64 and any thread count', () => {
  // in: a tail after the vector lanes on every path; out: not a multiple of the 24-row chunks
  // threads take, and large enough that M = 1 is split over several threads.
  const inDim = 1037;
  const out = 1001;
  const M = 64;
  const cases = ISAS.flatMap((isa) => DTYPES.map((dtype) => ({ isa, dtype })));
  it.each(cases)('$dtype on $isa', async ({ isa, dtype }) => {
    useIsa(isa);
    const { w } = await weights(out, inDim, dtype, 21);
    const xv = randomValues(M * inDim, 22);
    const bias = Tensor.from(randomValues(out, 23), { shape: [out] });
    const rowsOf = (n0: number, n: number) => Tensor.from(xv.slice(n0 * inDim, (n0 + n) * inDim), { shape: [n, inDim] });
    const bits = (t: Tensor) => new Uint32Array(t.toFloat32().buffer.slice(0));
    setThreads(1);
    // Each row alone, one thread: the decode step.
    const single: Uint32Array[] = [];
    for (let n = 0; n < M; n++) {
      const x = rowsOf(n, 1);
      const y = await linear(x, w, { bias });
      single.push(bits(y));
      [x, y].forEach((t) => t.dispose());
    }
    for (const threads of [1, 2, 3, 5]) {
      setThreads(threads);
      for (let m = threads === 1 ? 2 : 1; m <= M; m += threads === 1 ? 1 : 7) {
        const x = rowsOf(0, m);
        const y = await linear(x, w, { bias });
        const got = bits(y);
        for (let n = 0; n < m; n++) {
          const row = got.subarray(n * out, (n + 1) * out);
          const want = single[n]!;
          const diff = row.findIndex((v, i) => v !== want[i]);
          expect(diff, `threads ${threads}, M ${m}, row ${n}: element ${diff} differs from the row computed alone`).toBe(-1);
        }
        [x, y].forEach((t) => t.dispose());
      }
    }
    [w, bias].forEach((t) => t.dispose());
  });
});

describe('threads', () => {
  it('setThreads resizes the pool and 0 restores the default', () => {
    expect(setThreads(3)).toBe(3);
    expect(getThreads()).toBe(3);
    const d = setThreads(0);
    expect(d).toBe(native().cpuInfo().defaultThreads);
    expect(d).toBeGreaterThan(0);
  });
});

const x2 = Tensor.from(new Float32Array(6), { shape: [2, 3] });
const w43 = Tensor.from(new Float32Array(12), { shape: [4, 3] });
describeBadInputs('linear rejects bad arguments', [
  ['x not a tensor', () => linear(null as unknown as Tensor, w43), /x/],
  ['x f16', async () => linear(await x2.cast('f16'), w43), /x\.dtype/],
  ['w in mismatch', () => linear(x2, Tensor.from(new Float32Array(8), { shape: [4, 2] })), /w\.shape/],
  ['w int32', () => linear(x2, Tensor.from(new Int32Array(12), { shape: [4, 3] })), /w\.dtype/],
  ['bias wrong length', () => linear(x2, w43, { bias: Tensor.from(new Float32Array(3), { shape: [3] }) }), /bias\.shape/],
  ['out wrong shape', () => linear(x2, w43, { out: Tensor.from(new Float32Array(6), { shape: [2, 3] }) }), /out\.shape/],
  ['accumulate without out', () => linear(x2, w43, { accumulate: true }), /out/],
  ['threads negative', () => setThreads(-1), /threads/],
  ['threads fractional', () => setThreads(1.5), /threads/],
  ['threads option 0', () => checkThreadsOption(0), /threads/],
  ['threads option string', () => checkThreadsOption('2'), /threads/],
]);
