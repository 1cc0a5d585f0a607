/**
 * Slow, obvious references for the tokenizers: a line-by-line transcription of llama2.c's
 * run.c `encode` (quadratic rescans, byte fallback as id = byte + 3), and a minimal reader
 * of a GGUF file's metadata key/values (enough to take the embedded vocabulary out of
 * stories260K.gguf; not the project's GGUF reader).
 */

import { readFileSync } from 'node:fs';

/**
 * run.c's encode over a vocabulary of raw byte strings (`vocab[i]` one code unit per byte).
 * Byte fallback is id byte + 3, as run.c hard-codes; BOS 1, EOS 2.
 */
export function runCEncode(vocab: readonly string[], scores: ArrayLike<number>, text: string, bos: boolean, eos: boolean): number[] {
  // run.c sorts the vocabulary and binary-searches it; with unique texts that is a map.
  const lookup = new Map<string, number>();
  vocab.forEach((t, i) => {
    if (!lookup.has(t)) lookup.set(t, i);
  });
  const strLookup = (s: string): number => lookup.get(s) ?? -1;
  const bytes = new TextEncoder().encode(text);
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  if (bytes.length > 0) tokens.push(strLookup(' '));
  let buffer: number[] = [];
  for (let c = 0; c < bytes.length; c++) {
    if ((bytes[c]! & 0xc0) !== 0x80) buffer = [];
    buffer.push(bytes[c]!);
    if (c + 1 < bytes.length && (bytes[c + 1]! & 0xc0) === 0x80 && buffer.length < 4) continue;
    const id = strLookup(String.fromCharCode(...buffer));
    if (id !== -1) tokens.push(id);
    else for (const b of buffer) tokens.push(b + 3);
    buffer = [];
  }
  for (;;) {
    let bestScore = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = strLookup(vocab[tokens[i]!]! + vocab[tokens[i + 1]!]!);
      if (id !== -1 && scores[id]! > bestScore) {
        bestScore = scores[id]!;
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  if (eos) tokens.push(2);
  return tokens;
}

/** GGUF metadata values: numbers, bigints (64-bit), booleans, strings, arrays of these. */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** Reads the key/value section of a GGUF (v2/v3) file. */
export function readGgufMetadata(path: string): Map<string, GgufValue> {
  const buf = readFileSync(path);
  let at = 0;
  const u32 = () => ((at += 4), buf.readUInt32LE(at - 4));
  const u64 = () => ((at += 8), buf.readBigUInt64LE(at - 8));
  const str = () => {
    const n = Number(u64());
    at += n;
    return buf.toString('utf8', at - n, at);
  };
  const value = (type: number): GgufValue => {
    switch (type) {
      case 0: return buf.readUInt8(at++);
      case 1: return buf.readInt8(at++);
      case 2: return (at += 2), buf.readUInt16LE(at - 2);
      case 3: return (at += 2), buf.readInt16LE(at - 2);
      case 4: return u32();
      case 5: return (at += 4), buf.readInt32LE(at - 4);
      case 6: return (at += 4), buf.readFloatLE(at - 4);
      case 7: return buf.readUInt8(at++) !== 0;
      case 8: return str();
      case 9: {
        const itemType = u32();
        const n = Number(u64());
        const items: GgufValue[] = [];
        for (let i = 0; i < n; i++) items.push(value(itemType));
        return items;
      }
      case 10: return u64();
      case 11: return (at += 8), buf.readBigInt64LE(at - 8);
      case 12: return (at += 8), buf.readDoubleLE(at - 8);
      default: throw new Error(`${path}: unknown GGUF value type ${type} at byte ${at - 4}`);
    }
  };
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${path} is not a GGUF file`);
  at = 4;
  const version = u32();
  if (version < 2) throw new Error(`${path}: GGUF version ${version} is not supported here`);
  u64(); // tensor count
  const count = Number(u64());
  const out = new Map<string, GgufValue>();
  for (let i = 0; i < count; i++) {
    const key = str();
    out.set(key, value(u32()));
  }
  return out;
}

/** Whether a string holds a lone surrogate (a broken character). */
export function hasLoneSurrogate(s: string): boolean {
  return /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}
