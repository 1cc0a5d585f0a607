/**
 * The slow, obvious float64 reference of the Llama forward pass (lib/model/config.ts
 * semantics): whole-sequence causal attention, no cache. Used to check the native forward
 * on small random models. RoPE frequencies and the YaRN / LongRoPE attention factor come from the
 * independent float64 reference of test/helpers/rope-reference.ts; q/k biases (qkvBias) and
 * per-head q/k RMSNorm (qkNorm) as the config says. Covers the Gemma 2 / 3 and Phi-3 options as
 * Hugging Face writes them: embedding scale, GeGLU (tanh gelu), post-attention / post-MLP norms,
 * attention and final soft-capping, per-layer sliding windows with Gemma 3's local RoPE base, and
 * LongRoPE (its attention factor multiplies cos and sin, as in transformers).
 */
import type { ModelConfig } from '../../lib/model/config.js';
import { layerTensorNames } from '../../lib/model/config.js';
import { referenceAttentionFactor, referenceFrequencies, referenceLocalFrequencies } from './rope-reference.js';
import type { Tensor } from '../../lib/tensor/tensor.js';

type Mat = Float64Array;

function get(tensors: Map<string, Tensor>, name: string): Mat {
  return Float64Array.from(tensors.get(name)!.toFloat32());
}

function matvec(w: Mat, x: Mat, out: number, inn: number): Mat {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < inn; i++) s += w[o * inn + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function rmsnorm(x: Mat, w: Mat, eps: number): Mat {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * w[i]!);
}

/**
 * Logits [tokens.length][vocab] for a token sequence at positions 0..n-1. `inputOf`, when given,
 * replaces the input vector of each matrix product (named by the matrix's canonical name), e.g.
 * to apply the 8-bit activation rounding of block-quantized kernels.
 */
export function llamaReference(
  config: ModelConfig,
  tensors: Map<string, Tensor>,
  tokens: number[],
  inputOf: (matrix: string, x: Mat) => Mat = (_m, x) => x,
  contextLength = config.maxSeqLen,
): Float64Array[] {
  const { dim, nHeads, nKvHeads, headDim, hiddenDim, vocabSize } = config;
  // The kernels take f32 frequencies (the angle itself in double): round the float64 ones once.
  const globalFreq = referenceFrequencies(config, contextLength).map(Math.fround);
  const localFreq = referenceLocalFrequencies(config)?.map(Math.fround) ?? globalFreq;
  const mscale = referenceAttentionFactor(config);
  const embed = get(tensors, 'embed');
  const n = tokens.length;
  const embedScale = config.embedScale ?? 1;
  let xs: Mat[] = tokens.map((t) => embed.slice(t * dim, (t + 1) * dim).map((v) => v * embedScale));
  const scale = config.attnScale ?? 1 / Math.sqrt(headDim);
  const gelu = (z: number) => 0.5 * z * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (z + 0.044715 * z * z * z)));
  const rope = (v: Mat, heads: number, pos: number, invFreq: number[]) => {
    const out = Float64Array.from(v);
    for (let h = 0; h < heads; h++) {
      for (let j = 0; j < headDim / 2; j++) {
        // Angle as the kernels compute it: position (exact) times the f32 frequency.
        const angle = pos * invFreq[j]!;
        const [i0, i1] = config.ropeStyle === 'interleaved' ? [2 * j, 2 * j + 1] : [j, j + headDim / 2];
        const a = v[h * headDim + i0]!, b = v[h * headDim + i1]!;
        const c = Math.cos(angle) * mscale, sn = Math.sin(angle) * mscale;
        out[h * headDim + i0] = a * c - b * sn;
        out[h * headDim + i1] = a * sn + b * c;
      }
    }
    return out;
  };
  for (let l = 0; l < config.nLayers; l++) {
    const window = config.layerWindows?.[l] ?? 0;
    const invFreq = window > 0 ? localFreq : globalFreq;
    const nm = layerTensorNames(l);
    const wq = get(tensors, nm.wq), wk = get(tensors, nm.wk), wv = get(tensors, nm.wv), wo = get(tensors, nm.wo);
    const w1 = get(tensors, nm.w1), w2 = get(tensors, nm.w2), w3 = get(tensors, nm.w3);
    const bias = (name: string, len: number) => (config.qkvBias ? get(tensors, name) : new Float64Array(len));
    const [bq, bk, bv] = [bias(nm.bq, nHeads * headDim), bias(nm.bk, nKvHeads * headDim), bias(nm.bv, nKvHeads * headDim)];
    // Per-head RMSNorm of q and k (Qwen3), before RoPE.
    const headNorm = (v: Mat, heads: number, w: Mat | undefined): Mat => {
      if (!w) return v;
      const out = new Float64Array(v.length);
      for (let h = 0; h < heads; h++) out.set(rmsnorm(v.subarray(h * headDim, (h + 1) * headDim), w, config.normEps), h * headDim);
      return out;
    };
    const qn = config.qkNorm ? get(tensors, nm.qNorm) : undefined;
    const kn = config.qkNorm ? get(tensors, nm.kNorm) : undefined;
    const an = get(tensors, nm.attnNorm);
    const fn = get(tensors, nm.ffnNorm);
    const qs: Mat[] = [], ks: Mat[] = [], vs: Mat[] = [];
    for (let t = 0; t < n; t++) {
      const h = rmsnorm(xs[t]!, an, config.normEps);
      qs.push(rope(headNorm(matvec(wq, inputOf(nm.wq, h), nHeads * headDim, dim).map((v, i) => v + bq[i]!), nHeads, qn), nHeads, t, invFreq));
      ks.push(rope(headNorm(matvec(wk, inputOf(nm.wk, h), nKvHeads * headDim, dim).map((v, i) => v + bk[i]!), nKvHeads, kn), nKvHeads, t, invFreq));
      vs.push(matvec(wv, inputOf(nm.wv, h), nKvHeads * headDim, dim).map((v, i) => v + bv[i]!));
    }
    const next: Mat[] = [];
    for (let t = 0; t < n; t++) {
      const att = new Float64Array(nHeads * headDim);
      for (let hq = 0; hq < nHeads; hq++) {
        const kh = Math.floor(hq / (nHeads / nKvHeads));
        // Keys 0..t, or the last `window` of them (t - j < window).
        const first = window > 0 ? Math.max(0, t - window + 1) : 0;
        const scores = [];
        for (let j = first; j <= t; j++) {
          let s = 0;
          for (let d = 0; d < headDim; d++) s += qs[t]![hq * headDim + d]! * ks[j]![kh * headDim + d]!;
          s *= scale;
          scores.push(config.attnSoftcap ? config.attnSoftcap * Math.tanh(s / config.attnSoftcap) : s);
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = first; j <= t; j++) {
          for (let d = 0; d < headDim; d++) att[hq * headDim + d] = att[hq * headDim + d]! + (e[j - first]! / z) * vs[j]![kh * headDim + d]!;
        }
      }
      let proj = matvec(wo, inputOf(nm.wo, att), dim, nHeads * headDim);
      if (config.postNorms) proj = rmsnorm(proj, get(tensors, nm.postAttnNorm), config.normEps);
      const x1 = xs[t]!.map((v, i) => v + proj[i]!);
      const h2 = rmsnorm(x1, fn, config.normEps);
      const g = matvec(w1, inputOf(nm.w1, h2), hiddenDim, dim);
      const u = matvec(w3, inputOf(nm.w3, h2), hiddenDim, dim);
      const act = g.map((z, i) => (config.activation === 'gelu_tanh' ? gelu(z) : z / (1 + Math.exp(-z))) * u[i]!);
      let down = matvec(w2, inputOf(nm.w2, act), dim, hiddenDim);
      if (config.postNorms) down = rmsnorm(down, get(tensors, nm.postFfnNorm), config.normEps);
      next.push(x1.map((v, i) => v + down[i]!));
    }
    xs = next;
  }
  const norm = get(tensors, 'norm');
  const out = config.tiedEmbeddings ? embed : get(tensors, 'output');
  const cap = config.finalSoftcap;
  return xs.map((x) => {
    const logits = matvec(out, inputOf(config.tiedEmbeddings ? 'embed' : 'output', rmsnorm(x, norm, config.normEps)), vocabSize, dim);
    return cap ? logits.map((v) => cap * Math.tanh(v / cap)) : logits;
  });
}
