/**
 * Generators of corrupt model files for the fuzz suite (test/fuzz/corrupt-files.test.ts):
 * truncations at every structural boundary, bit flips in headers, absurd counts, lengths and
 * offsets, overflowing shapes, overlapping and misaligned data, wrong dtypes, duplicated
 * names, for GGUF, llama2.c and safetensors (+ config.json). Each generator returns cases
 * {label, write(path)}; the suite writes them and loads them in child processes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { rng } from '../helpers/verify-reference.js';

/** One corrupt file (or directory, for Hugging Face). */
export interface FuzzCase {
  label: string;
  /** Which clean file it derives from (for "loads identically" checks). */
  reference: 'gguf' | 'llama2c' | 'hf';
  /** Writes the case under `dir` and returns the path to load. */
  write(dir: string): string;
}


const fileCase = (label: string, reference: FuzzCase['reference'], make: () => Buffer): FuzzCase => ({
  label,
  reference,
  write: (dir) => {
    const path = join(dir, `${label.replace(/[^\w.-]+/g, '_').slice(0, 80)}.${reference === 'gguf' ? 'gguf' : 'bin'}`);
    writeFileSync(path, make());
    return path;
  },
});

// ------------------------------------------------------------------ GGUF

/** Where the structures of a GGUF file lie (an independent walk of the header). */
interface GgufLayout {
  /** Byte offsets that end a structural field (truncation points). */
  boundaries: number[];
  /** The first metadata entry's key-length field, its value-type field. */
  kv: { keyLenAt: number; typeAt: number; key: string; valueAt: number; type: number }[];
  tensors: { name: string; nameLenAt: number; nDimsAt: number; nDims: number; neAt: number; typeAt: number; offsetAt: number; offset: bigint; type: number }[];
  dataStart: number;
  alignment: number;
}

const SCALAR_SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

export function ggufLayout(b: Buffer): GgufLayout {
  let p = 0;
  const boundaries: number[] = [];
  const mark = () => boundaries.push(p);
  p = 4; mark(); // magic
  p = 8; mark(); // version
  const nTensors = Number(b.readBigUInt64LE(p));
  p += 8; mark();
  const nKv = Number(b.readBigUInt64LE(p));
  p += 8; mark();
  const kv: GgufLayout['kv'] = [];
  let alignment = 32;
  const skipValue = (type: number): void => {
    if (type === 8) {
      const n = Number(b.readBigUInt64LE(p));
      p += 8 + n;
    } else if (type === 9) {
      const et = b.readUInt32LE(p);
      p += 4;
      mark();
      const n = Number(b.readBigUInt64LE(p));
      p += 8;
      mark();
      for (let i = 0; i < n; i++) skipValue(et);
    } else {
      p += SCALAR_SIZES[type]!;
    }
  };
  for (let i = 0; i < nKv; i++) {
    const keyLenAt = p;
    const keyLen = Number(b.readBigUInt64LE(p));
    p += 8; mark();
    const key = b.toString('latin1', p, p + keyLen);
    p += keyLen; mark();
    const typeAt = p;
    const type = b.readUInt32LE(p);
    p += 4; mark();
    const valueAt = p;
    if (key === 'general.alignment') alignment = b.readUInt32LE(p);
    skipValue(type);
    mark();
    kv.push({ keyLenAt, typeAt, key, valueAt, type });
  }
  const tensors: GgufLayout['tensors'] = [];
  for (let i = 0; i < nTensors; i++) {
    const nameLenAt = p;
    const nameLen = Number(b.readBigUInt64LE(p));
    p += 8; mark();
    const name = b.toString('latin1', p, p + nameLen);
    p += nameLen; mark();
    const nDimsAt = p;
    const nDims = b.readUInt32LE(p);
    p += 4; mark();
    const neAt = p;
    for (let d = 0; d < nDims; d++) {
      p += 8; mark();
    }
    const typeAt = p;
    const type = b.readUInt32LE(p);
    p += 4; mark();
    const offsetAt = p;
    const offset = b.readBigUInt64LE(p);
    p += 8; mark();
    tensors.push({ name, nameLenAt, nDimsAt, nDims, neAt, typeAt, offsetAt, offset, type });
  }
  const dataStart = Math.ceil(p / alignment) * alignment;
  boundaries.push(dataStart);
  for (const t of tensors) {
    boundaries.push(dataStart + Number(t.offset));
    boundaries.push(dataStart + Number(t.offset) + 16);
  }
  boundaries.push(b.length - 1);
  return { boundaries: [...new Set(boundaries)].filter((x) => x < b.length).sort((x, y) => x - y), kv, tensors, dataStart, alignment };
}

export function ggufCases(src: Buffer, flips: number, seed: number): FuzzCase[] {
  const L = ggufLayout(src);
  const cases: FuzzCase[] = [];
  const edit = (label: string, f: (b: Buffer) => Buffer | void) =>
    cases.push(fileCase(`gguf ${label}`, 'gguf', () => {
      const b = Buffer.from(src);
      return f(b) ?? b;
    }));
  for (const at of L.boundaries) edit(`truncated at ${at}`, (b) => b.subarray(0, at));
  edit('empty', (b) => b.subarray(0, 0));
  const u64 = (at: number, v: bigint) => (b: Buffer) => void b.writeBigUInt64LE(v, at);
  const u32 = (at: number, v: number) => (b: Buffer) => void b.writeUInt32LE(v >>> 0, at);
  const absurd64 = [0n, 1n, 2n ** 31n, 2n ** 32n, 2n ** 62n, 2n ** 63n, 2n ** 64n - 1n];
  for (const v of absurd64) edit(`tensor count ${v}`, u64(8, v));
  for (const v of absurd64) edit(`metadata count ${v}`, u64(16, v));
  for (const v of [1, 4, 0x46554747, 2 ** 31, 2 ** 32 - 1]) edit(`version ${v}`, u32(4, v));
  edit('bad magic', (b) => void b.write('GGUX', 0, 'latin1'));
  for (const kv of L.kv.slice(0, 6)) {
    for (const v of [0n, 2n ** 32n, 2n ** 63n]) edit(`key length ${v} of '${kv.key}'`, u64(kv.keyLenAt, v));
    for (const v of [13, 99, 2 ** 31]) edit(`value type ${v} of '${kv.key}'`, u32(kv.typeAt, v));
  }
  for (const kv of L.kv.filter((k) => k.type === 9 || k.type === 8)) {
    const countAt = kv.type === 9 ? kv.valueAt + 4 : kv.valueAt;
    for (const v of [2n ** 32n, 2n ** 62n, 2n ** 64n - 1n]) edit(`length ${v} of '${kv.key}'`, u64(countAt, v));
    if (kv.type === 9) for (const v of [9, 13, 99]) edit(`element type ${v} of '${kv.key}'`, u32(kv.valueAt, v));
  }
  for (const kv of L.kv.filter((k) => k.type === 4 || k.type === 5)) {
    for (const v of [0, 3, 2 ** 31 - 1, 2 ** 32 - 1]) edit(`'${kv.key}' = ${v}`, u32(kv.valueAt, v));
  }
  const ts = L.tensors;
  const pick = [0, 1, Math.floor(ts.length / 2), ts.length - 1];
  for (const i of pick) {
    const t = ts[i]!;
    for (const v of [0, 5, 2 ** 31, 2 ** 32 - 1]) edit(`n_dims ${v} of '${t.name}'`, u32(t.nDimsAt, v));
    for (const v of [0n, 2n ** 32n, 2n ** 40n + 1n, 2n ** 62n, 2n ** 64n - 1n]) edit(`ne[0] ${v} of '${t.name}'`, u64(t.neAt, v));
    if (t.nDims === 2) edit(`ne [2^32, 2^32] of '${t.name}' (overflowing shape)`, (b) => (u64(t.neAt, 2n ** 32n)(b), u64(t.neAt + 8, 2n ** 32n)(b)));
    for (const v of [1, 2, 3, 8, 12, 24, 30, 99, 2 ** 31]) edit(`type ${v} of '${t.name}'`, u32(t.typeAt, v));
    const off = t.offset;
    const other = ts[(i + 1) % ts.length]!.offset;
    for (const [what, v] of [['+1', off + 1n], ['+32', off + 32n], ['-32', off - 32n], ['of another tensor', other], ['2^62', 2n ** 62n], ['2^64-32', 2n ** 64n - 32n], ['file size', BigInt(src.length)]] as const) {
      if (v >= 0n) edit(`offset ${what} of '${t.name}'`, u64(t.offsetAt, v));
    }
  }
  // Duplicate names: copy a tensor's name onto another of the same length.
  for (let i = 0; i < ts.length; i++) {
    const j = ts.findIndex((u, k) => k > i && u.name.length === ts[i]!.name.length);
    if (j < 0) continue;
    edit(`duplicate name '${ts[i]!.name}'`, (b) => void b.write(ts[i]!.name, ts[j]!.nameLenAt + 8, 'latin1'));
    if (cases.length > 400) break;
  }
  const r = rng(seed);
  for (let k = 0; k < flips; k++) {
    const at = Math.floor(r() * L.dataStart);
    const bit = Math.floor(r() * 8);
    edit(`bit ${bit} of header byte ${at}`, (b) => void (b[at] = b[at]! ^ (1 << bit)));
  }
  return cases;
}

// --------------------------------------------------------------- llama2.c

/** The 7 int32 header fields of a llama2.c v0 file, and the byte ranges of its tensors. */
export function llama2cCases(src: Buffer, flips: number, seed: number): FuzzCase[] {
  const f = Array.from({ length: 7 }, (_, i) => src.readInt32LE(4 * i));
  const [dim, hidden, layers, heads, kvHeads, vocabRaw, seqLen] = f as [number, number, number, number, number, number, number];
  const vocab = Math.abs(vocabRaw);
  const kvDim = (dim / heads) * kvHeads;
  const sizes = [vocab * dim, layers * dim, layers * dim * dim, layers * dim * kvDim, layers * dim * kvDim, layers * dim * dim, layers * dim, layers * dim * hidden, layers * hidden * dim, layers * dim * hidden, dim, (seqLen * dim) / heads / 2, (seqLen * dim) / heads / 2];
  const bounds: number[] = [0, 4, 8, 12, 16, 20, 24, 27];
  let off = 28;
  for (const s of sizes) {
    bounds.push(off, off + 2, off + Math.floor(s / 2) * 4);
    off += s * 4;
  }
  bounds.push(src.length - 1);
  const cases: FuzzCase[] = [];
  const edit = (label: string, g: (b: Buffer) => Buffer | void) =>
    cases.push(fileCase(`llama2c ${label}`, 'llama2c', () => {
      const b = Buffer.from(src);
      return g(b) ?? b;
    }));
  for (const at of [...new Set(bounds)].filter((x) => x < src.length)) edit(`truncated at ${at}`, (b) => b.subarray(0, at));
  edit('one byte too long', (b) => Buffer.concat([b, Buffer.alloc(1)]));
  const names = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'];
  for (let i = 0; i < 7; i++) {
    for (const v of [0, -1, 1, 2, 3, 7, 2 ** 31 - 1, -(2 ** 31), f[i]! * 2, f[i]! + 1, -f[i]!]) {
      edit(`${names[i]} = ${v}`, (b) => void b.writeInt32LE(v | 0, 4 * i));
    }
  }
  // The v1/v2 magic with a bad version or a garbage header.
  for (const v of [0, 1, 2, 3, 255]) {
    edit(`ak42 version ${v}`, (b) => {
      const h = Buffer.alloc(256);
      h.writeUInt32LE(0x616b3432, 0);
      h.writeInt32LE(v, 4);
      src.copy(h, 8, 0, 28);
      return Buffer.concat([h, b.subarray(28)]);
    });
  }
  const r = rng(seed);
  for (let k = 0; k < flips; k++) {
    const at = Math.floor(r() * 28);
    const bit = Math.floor(r() * 8);
    edit(`bit ${bit} of header byte ${at}`, (b) => void (b[at] = b[at]! ^ (1 << bit)));
  }
  return cases;
}

// ------------------------------------------------------------ safetensors

/** Cases derived from a clean Hugging Face directory: its config.json text and model.safetensors bytes. */
export function hfCases(configText: string, st: Buffer, flips: number, seed: number): FuzzCase[] {
  const n = Number(st.readBigUInt64LE(0));
  const headerText = st.toString('utf8', 8, 8 + n);
  const header = JSON.parse(headerText) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const data = st.subarray(8 + n);
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const cases: FuzzCase[] = [];
  const dirCase = (label: string, make: () => { config?: string; st: Buffer }): void => {
    cases.push({
      label: `hf ${label}`,
      reference: 'hf',
      write: (dir) => {
        const d = join(dir, `hf-${cases.length}-${label.replace(/[^\w.-]+/g, '_').slice(0, 60)}`);
        mkdirSync(d, { recursive: true });
        const m = make();
        writeFileSync(join(d, 'config.json'), m.config ?? configText);
        writeFileSync(join(d, 'model.safetensors'), m.st);
        return d;
      },
    });
  };
  const withHeader = (text: string, body: Buffer = data) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
    return Buffer.concat([len, Buffer.from(text), body]);
  };
  const withEntry = (label: string, name: string, change: (e: Record<string, unknown>) => void) =>
    dirCase(label, () => {
      const h = JSON.parse(headerText) as Record<string, Record<string, unknown>>;
      change(h[name]!);
      return { st: withHeader(JSON.stringify(h)) };
    });
  // Truncations: in the length, in the header, at its end, at each tensor's start and middle.
  const bounds = [0, 4, 7, 8, 9, 8 + Math.floor(n / 2), 8 + n - 1, 8 + n];
  for (const k of names) {
    const [b, e] = header[k]!.data_offsets;
    bounds.push(8 + n + b, 8 + n + Math.floor((b + e) / 2));
  }
  bounds.push(st.length - 1);
  for (const at of [...new Set(bounds)]) dirCase(`truncated at ${at}`, () => ({ st: st.subarray(0, at) }));
  for (const v of [0n, 1n, 2n ** 63n, 2n ** 64n - 1n, 100_000_001n, BigInt(n - 1), BigInt(n + 1)]) {
    dirCase(`header length ${v}`, () => {
      const b = Buffer.from(st);
      b.writeBigUInt64LE(v, 0);
      return { st: b };
    });
  }
  for (const name of [names[0]!, names[Math.floor(names.length / 2)]!, names.at(-1)!]) {
    for (const dtype of ['F16', 'BF16', 'I8', 'U8', 'F64', 'I64', 'XX', 1, null]) withEntry(`dtype ${String(dtype)} of ${name}`, name, (e) => (e.dtype = dtype));
    for (const shape of [[], [2 ** 53], [2 ** 31, 2 ** 31], [-1], [1.5], 'x', [1, 1, 1, 1, 1, 1, 1, 1, 1]]) {
      withEntry(`shape ${JSON.stringify(shape)} of ${name}`, name, (e) => (e.shape = shape));
    }
    const [b, e] = header[name]!.data_offsets;
    for (const o of [[0, 0], [b, e + 1], [e, b], [-1, e], [b + 1, e + 1], [b + 2, e + 2], [0, 2 ** 60], [1.5, 2], 'x', [b]]) {
      withEntry(`data_offsets ${JSON.stringify(o)} of ${name}`, name, (x) => (x.data_offsets = o));
    }
    withEntry(`entry of ${name} not an object`, name, (x) => {
      for (const k of Object.keys(x)) delete x[k];
    });
  }
  // Duplicated keys (text level: JSON.stringify cannot write them) and a tensor named twice.
  dirCase('duplicate key', () => ({ st: withHeader(headerText.replace(`"${names[1]}"`, `"${names[0]}"`)) }));
  dirCase('duplicate metadata key', () => ({ st: withHeader(headerText.replace('"format":"pt"', '"format":"pt","format":"np"')) }));
  dirCase('not JSON', () => ({ st: withHeader('{"a": [1, 2') }));
  dirCase('JSON array', () => ({ st: withHeader('[1, 2, 3]') }));
  dirCase('missing tensor', () => {
    const h = JSON.parse(headerText) as Record<string, unknown>;
    delete h[names[0]!];
    return { st: withHeader(JSON.stringify(h)) };
  });
  // config.json against the tensors.
  const config = JSON.parse(configText) as Record<string, unknown>;
  const withConfig = (key: string, v: unknown) =>
    dirCase(`config ${key} = ${JSON.stringify(v)}`, () => ({ config: JSON.stringify({ ...config, [key]: v }), st }));
  for (const v of [1e9, 0, -1, 2.5, '2', null, 2 ** 31]) withConfig('num_hidden_layers', v);
  for (const v of [(config.hidden_size as number) * 2, 0, 1e9]) withConfig('hidden_size', v);
  for (const v of [3, 0, 1e9]) withConfig('num_attention_heads', v);
  for (const v of [3, 0, 1e9]) withConfig('num_key_value_heads', v);
  for (const v of [(config.vocab_size as number) + 1, 0, 2 ** 40]) withConfig('vocab_size', v);
  for (const v of [7, 1e6, 0]) withConfig('head_dim', v);
  for (const v of [1, 1e9]) withConfig('intermediate_size', v);
  for (const v of [-1, 'x']) withConfig('rope_theta', v);
  for (const v of [0, -1]) withConfig('rms_norm_eps', v);
  for (const v of [0, -5]) withConfig('max_position_embeddings', v);
  withConfig('tie_word_embeddings', 'yes');
  withConfig('model_type', 'gpt2');
  withConfig('architectures', ['GPT2LMHeadModel']);
  dirCase('config not JSON', () => ({ config: '{"hidden_size": ', st }));
  const r = rng(seed);
  for (let k = 0; k < flips; k++) {
    const at = Math.floor(r() * (8 + n));
    const bit = Math.floor(r() * 8);
    dirCase(`bit ${bit} of header byte ${at}`, () => {
      const b = Buffer.from(st);
      b[at] = b[at]! ^ (1 << bit);
      return { st: b };
    });
  }
  return cases;
}
