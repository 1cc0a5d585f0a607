/**
 * Loader integrity and numeric failures (issue 16, defect 2): files whose tensors overlap,
 * whose declared type does not describe the bytes, safetensors headers with duplicated keys
 * or overlapping data_offsets, and absurd counts all fail with a CanopyError naming what is
 * wrong; validate: true finds NaN / Infinity in the weights (tensor and index); logits that
 * are all NaN end generation with finishReason 'error' and a NumericError, not token 0.
 *
 * Checked on the old code: every case here loaded (or generated [.., 0, 0, ...] with
 * finishReason 'length'), except the num_hidden_layers case, which ran for ~40 s then threw a
 * RangeError.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { ArgumentError, CanopyError, IoError, NumericError } from '../../lib/errors.js';
import { generate } from '../../lib/generate.js';
import { readGguf } from '../../lib/model/formats/gguf.js';
import { loadModel } from '../../lib/model/load.js';
import { loadWeights } from '../../lib/model/weights.js';
import { randomConfig } from '../helpers/random-model.js';
import { hfConfigJson, syntheticTensors, toHfTensors, writeHfDir } from '../helpers/model-writers.js';
import { testModel } from '../helpers/test-models.js';

const ggufPath = testModel('stories260K/stories260K.gguf', 'loader integrity');
const binPath = testModel('stories260K/stories260K.bin', 'loader integrity');
const dir = mkdtempSync(join(tmpdir(), 'canopy-integrity-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function expectError(run: () => unknown, cls: new (...a: never[]) => CanopyError, message: RegExp): void {
  let err: unknown;
  try {
    run();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(cls);
  expect((err as Error).message).toMatch(message);
}

/** Where each tensor's info lies in a GGUF file: the byte after its name. */
function ggufInfoAt(buf: Buffer, name: string): number {
  const key = Buffer.alloc(8 + name.length);
  key.writeBigUInt64LE(BigInt(name.length));
  key.write(name, 8, 'latin1');
  const at = buf.indexOf(key);
  expect(at).toBeGreaterThan(0);
  return at + key.length;
}

describe.skipIf(!ggufPath)('GGUF data ranges', () => {
  const src = readFileSync(ggufPath ?? __filename);
  const info = ggufPath ? readGguf(ggufPath) : undefined;
  /** A copy with tensor `name`'s type and / or relative offset changed. */
  const edit = (file: string, name: string, change: { type?: number; offset?: number }) => {
    const b = Buffer.from(src);
    const at = ggufInfoAt(b, name);
    const nDims = b.readUInt32LE(at);
    const typeAt = at + 4 + 8 * nDims;
    if (change.type !== undefined) b.writeUInt32LE(change.type, typeAt);
    if (change.offset !== undefined) b.writeBigUInt64LE(BigInt(change.offset), typeAt + 4);
    const path = join(dir, file);
    writeFileSync(path, b);
    return path;
  };

  it('the real file loads (packed, aligned, inside the file)', () => {
    loadWeights(ggufPath!).dispose();
  });

  it('a tensor whose data overlaps another is an error naming both', () => {
    const [a, b] = info!.tensors;
    const path = edit('overlap.gguf', b!.name, { offset: a!.offset + 32 });
    expectError(() => loadWeights(path), IoError, new RegExp(`tensors '${a!.name}' .* and '${b!.name}' .* overlap`));
  });

  it('a tensor moved to a misaligned offset is an error', () => {
    const [, b] = info!.tensors;
    const path = edit('misaligned.gguf', b!.name, { offset: b!.offset + 4 });
    expectError(() => loadWeights(path), IoError, /not a multiple of the alignment 32/);
  });

  // F32 data declared F16 (1), BF16 (30), Q8_0 (8): the declared size no longer covers the
  // bytes, which the packed layout exposes (a gap, or trailing bytes after the last tensor).
  for (const [label, type] of [['F16', 1], ['BF16', 30], ['Q8_0', 8]] as const) {
    it(`F32 data declared ${label} is an error`, () => {
      for (const t of [info!.tensors.find((x) => x.typeName === 'F32' && x.ne[0]! % 32 === 0)!, info!.tensors.at(-1)!]) {
        const path = edit(`relabel-${label}-${t.name}.gguf`, t.name, { type });
        expectError(() => loadWeights(path), IoError, /bytes belong to no tensor|ends at byte \d+ but the file holds|a declared type or shape does not match/);
      }
    });
  }
});

describe('safetensors headers', () => {
  /** A safetensors file from raw header text and data bytes. */
  const st = (name: string, header: string, data: Uint8Array) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
    const d = join(dir, name);
    rmSync(d, { recursive: true, force: true });
    writeFileSync(join(dir, `${name}.safetensors`), Buffer.concat([len, Buffer.from(header), data]));
    return join(dir, `${name}.safetensors`);
  };
  const readSt = async (path: string) => (await import('../../lib/model/formats/safetensors.js')).readSafetensors(path);

  it('a duplicated key is an error naming it', async () => {
    const path = st('dup', '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', new Uint8Array(16));
    await expect(readSt(path)).rejects.toThrow(/names 'a' twice/);
    const nested = st('dup2', '{"__metadata__":{"k":"1","k":"2"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(8));
    await expect(readSt(nested)).rejects.toThrow(/names '__metadata__\.k' twice/);
  });

  it('overlapping data_offsets are an error naming both tensors', async () => {
    const path = st('ov', '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', new Uint8Array(16));
    await expect(readSt(path)).rejects.toThrow(/tensors 'a' .* and 'b' .* overlap/);
  });

  it('a gap or trailing bytes in the data section are errors; a packed file reads', async () => {
    const gap = st('gap', '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}', new Uint8Array(20));
    await expect(readSt(gap)).rejects.toThrow(/4 bytes belong to no tensor/);
    const trailing = st('trail', '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(12));
    await expect(readSt(trailing)).rejects.toThrow(/file holds \d+ bytes; a declared type or shape does not match/);
    const ok = st('ok', '{"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}', new Uint8Array(16));
    expect((await readSt(ok)).tensors.map((t) => t.name)).toEqual(['b', 'a']);
  });

  it('a dtype relabelled without its offsets is an error (byte count)', async () => {
    // F32 [4] data (16 bytes) declared BF16 [4]: 8 bytes expected.
    const path = st('relabel', '{"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}}', new Uint8Array(16));
    await expect(readSt(path)).rejects.toThrow(/hold 16 bytes but BF16 \[4\] needs 8/);
  });
});

describe('absurd counts fail fast', () => {
  it('HF num_hidden_layers 1e9 fails at once naming the field', () => {
    const c = randomConfig({ nLayers: 1 });
    const { tensors, shapes } = syntheticTensors(c, 1);
    const { st } = toHfTensors(tensors, shapes, c, 'F32');
    const d = join(dir, 'hf-layers');
    writeHfDir(d, hfConfigJson(c, { num_hidden_layers: 1e9 }), st);
    const t0 = performance.now();
    expectError(() => loadWeights(d), ArgumentError, /config\.json: nLayers must be an integer in \[1, 1024\]; found 1000000000/);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});

describe.skipIf(!binPath)('NaN and Infinity', () => {
  /** stories260K.bin (llama2.c v0: 28-byte header, then the embedding [512, 64] f32) with `value` at embedding element `at`. */
  const poisoned = (name: string, at: number, value: number) => {
    const b = Buffer.from(readFileSync(binPath!));
    b.writeFloatLE(value, 28 + 4 * at);
    const path = join(dir, name);
    writeFileSync(path, b);
    copyFileSync(join(binPath!, '..', 'tok512.bin'), join(dir, 'tok512.bin'));
    return path;
  };

  it('validate: true reports the tensor and the first index; without it the file loads', () => {
    const path = poisoned('nan.bin', 64 + 36, NaN);
    expectError(() => loadWeights(path, { validate: true }), NumericError, /tensor 'embed' \(f32 \[512, 64\]\) holds NaN at element 100 \(row 1, column 36\)/);
    const inf = poisoned('inf.bin', 7, -Infinity);
    expectError(() => loadWeights(inf, { validate: true }), NumericError, /holds -Infinity at element 7/);
    loadWeights(path).dispose();
    loadWeights(binPath!, { validate: true }).dispose();
  });

  it.each([
    ['greedy', {}],
    ['sampling', { temperature: 1, seed: 3 }],
  ])('logits all NaN end the sequence with finishReason error (%s), not token 0', async (_label, sampling) => {
    // NaN in the BOS token's embedding row: every logit after it is NaN.
    const path = poisoned('nan-bos.bin', 64 + 5, NaN);
    const { model, tokenizer } = await loadModel(path, { backend: 'cpu' });
    try {
      const r = await generate({ model, tokenizer, prompt: 'Once', maxTokens: 16, ...sampling });
      expect(r.finishReason).toBe('error');
      expect(r.tokens).toEqual([]);
      expect(r.error).toBeInstanceOf(NumericError);
      expect(r.error!.code).toBe('ERR_CANOPY_NUMERIC');
      expect(r.error!.message).toMatch(/no usable value/);
    } finally {
      model.dispose();
    }
  });

  it('logits that turn NaN mid-generation (Inf in a weight) end plain and speculative decoding alike (verify gives -1, not token 0)', async () => {
    // +Infinity in the embedding row of a token the clean model generates: the output head is
    // tied, so that token's logit becomes +-Infinity; once it is chosen and fed, RMSNorm turns
    // the hidden state to NaN and every logit row after it is NaN. A clean copy drafts for the
    // poisoned target, so the NaN rows reach tree verification, which must end the sequence as
    // the plain step does (before, it returned token 0 for an all-NaN row).
    const clean = await loadModel(binPath!, { backend: 'cpu' });
    const want = await generate({ model: clean.model, tokenizer: clean.tokenizer, prompt: 'Once', maxTokens: 12, temperature: 0 });
    const bad = want.tokens[2]!;
    const { model, tokenizer } = await loadModel(poisoned('inf-mid.bin', bad * 64 + 3, Infinity), { backend: 'cpu' });
    try {
      const plain = await generate({ model, tokenizer, prompt: 'Once', maxTokens: 12, temperature: 0 });
      expect(plain.finishReason).toBe('error');
      expect(plain.tokens.at(-1)).toBe(bad);
      expect(plain.error).toBeInstanceOf(NumericError);
      const spec = await generate({ model, tokenizer, prompt: 'Once', maxTokens: 12, temperature: 0, strategy: 'speculative', draft: clean.model, speculation: { k: 4, fixed: true } });
      expect(spec.stats.speculation!.drafted).toBeGreaterThan(0);
      expect(spec.finishReason).toBe('error');
      expect(spec.tokens).toEqual(plain.tokens);
      expect(spec.error).toBeInstanceOf(NumericError);
      // Sampling: NaN rows of rejected nodes must not stop the step (the verifier never reads
      // them); a NaN row on the accepted path ends the sequence with the same error.
      for (const seed of [1, 2, 3]) {
        const sampled = await generate({ model, tokenizer, prompt: 'Once', maxTokens: 60, temperature: 1, seed, strategy: 'speculative', draft: clean.model, speculation: { k: 4, fixed: true } });
        expect(['error', 'length', 'eos']).toContain(sampled.finishReason);
        // (A row whose logit for `bad` is +Infinity has no distribution either: it may end the
        // sequence before `bad` is drawn.)
        if (sampled.finishReason === 'error') expect(sampled.error).toBeInstanceOf(NumericError);
        else expect(sampled.tokens).not.toContain(bad);
      }
    } finally {
      model.dispose();
      clean.model.dispose();
    }
  });
});
