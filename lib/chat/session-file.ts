/**
 * Chat session files: a ChatSession's conversation, token ids and KV cache rows, so a
 * conversation can continue in another process without recomputing its prompt.
 *
 *   bytes 0..7    "CNPYCHAT"
 *   bytes 8..11   format version (u32 little-endian), SESSION_FILE_VERSION
 *   bytes 12..15  header length H (u32 LE)
 *   H bytes       JSON header: { version, model: { configHash, nLayers, nKvHeads, headDim },
 *                 dtype, rows, messages, cached, seen, seenText }
 *   then          keys, then values of the first `rows` cache rows: [nLayers, rows, nKvHeads,
 *                 headDim] each, in `dtype` (f32 / f16 / bf16), little-endian
 *
 * Quantized caches (int8 / int4 / fp8) are saved without rows (rows 0): the restored
 * session recomputes its prompt on the next turn. The model's identity is the SHA-256 of its
 * config; a file saved with another model is refused at load.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

import { ArgumentError, IoError } from '../errors.js';
import type { KvCacheDtype } from '../model/kv-cache.js';
import type { Model } from '../model/model.js';
import { Tensor } from '../tensor/tensor.js';
import { dtypeSize, type FloatDType } from '../tensor/dtype.js';
import type { ChatMessage } from './template.js';

export const SESSION_FILE_VERSION = 1;
const MAGIC = 'CNPYCHAT';

export interface SessionState {
  dtype: KvCacheDtype;
  messages: ChatMessage[];
  /** The ids the cache rows hold (rows 0 .. cached.length - 1). */
  cached: number[];
  seen: number[];
  seenText: string;
}

/** The identity a session file records: SHA-256 of the model's config (shape, vocabulary, RoPE, norms, ...). */
export function modelConfigHash(model: Model): string {
  return createHash('sha256').update(JSON.stringify(model.config)).digest('hex');
}

export function writeSessionFile(path: string, model: Model, state: SessionState, rows: { k: Tensor; v: Tensor } | undefined): void {
  const c = model.config;
  const header = Buffer.from(
    JSON.stringify({
      version: SESSION_FILE_VERSION,
      model: { configHash: modelConfigHash(model), nLayers: c.nLayers, nKvHeads: c.nKvHeads, headDim: c.headDim },
      dtype: state.dtype,
      rows: rows ? rows.k.shape[1]! : 0,
      messages: state.messages,
      cached: rows ? state.cached : [],
      seen: state.seen,
      seenText: state.seenText,
    }),
    'utf8',
  );
  const pre = Buffer.alloc(16);
  pre.write(MAGIC, 0, 'latin1');
  pre.writeUInt32LE(SESSION_FILE_VERSION, 8);
  pre.writeUInt32LE(header.length, 12);
  const bytes = (t: Tensor) => {
    const a = t.toArray();
    return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  };
  try {
    writeFileSync(path, Buffer.concat([pre, header, ...(rows ? [bytes(rows.k), bytes(rows.v)] : [])]));
  } catch (e) {
    throw new IoError(`cannot write the chat session file ${path}: ${(e as Error).message}`, { cause: e });
  }
}

export function readSessionFile(path: string, model: Model): { state: SessionState; rows: { k: Tensor; v: Tensor } | undefined } {
  if (typeof path !== 'string' || path.length === 0) throw new ArgumentError('path', 'a file path', path);
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new IoError(`cannot read the chat session file ${path}: ${(e as Error).message}`, { cause: e });
  }
  const bad = (why: string) => new IoError(`${path} is not a usable canopy chat session file: ${why}`);
  if (buf.length < 16 || buf.toString('latin1', 0, 8) !== MAGIC) throw bad(`it does not start with "${MAGIC}"`);
  const version = buf.readUInt32LE(8);
  if (version !== SESSION_FILE_VERSION) throw bad(`format version ${version}, this canopy reads version ${SESSION_FILE_VERSION}`);
  const hlen = buf.readUInt32LE(12);
  if (16 + hlen > buf.length) throw bad('truncated header');
  let h: { model: { configHash: string }; dtype: KvCacheDtype; rows: number; messages: ChatMessage[]; cached: number[]; seen: number[]; seenText: string };
  try {
    h = JSON.parse(buf.toString('utf8', 16, 16 + hlen));
  } catch {
    throw bad('its header is not JSON');
  }
  const hash = modelConfigHash(model);
  if (h.model?.configHash !== hash) {
    throw new ArgumentError('model', `the model the session in ${path} was saved with (config hash ${String(h.model?.configHash).slice(0, 12)}...)`, `a model with config hash ${hash.slice(0, 12)}...`);
  }
  if (!Array.isArray(h.messages) || !Array.isArray(h.cached) || !Array.isArray(h.seen) || typeof h.seenText !== 'string' || !Number.isInteger(h.rows) || h.rows < 0 || h.cached.length !== h.rows) {
    throw bad('its header lacks messages, token ids or rows');
  }
  const state: SessionState = { dtype: h.dtype, messages: h.messages, cached: h.cached, seen: h.seen, seenText: h.seenText };
  if (h.rows === 0) return { state, rows: undefined };
  const c = model.config;
  const dtype = h.dtype as FloatDType;
  if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') throw bad(`rows of a ${String(h.dtype)} cache`);
  const shape = [c.nLayers, h.rows, c.nKvHeads, c.headDim];
  const n = shape.reduce((a, b) => a * b, 1);
  const bytes = n * dtypeSize(dtype);
  const at = 16 + hlen;
  if (buf.length !== at + 2 * bytes) throw bad(`${buf.length - at} bytes of cache rows, expected ${2 * bytes}`);
  const rowsOf = (off: number): Tensor => {
    const copy = new Uint8Array(bytes);
    copy.set(buf.subarray(off, off + bytes));
    const data = dtype === 'f32' ? new Float32Array(copy.buffer) : new Uint16Array(copy.buffer);
    return Tensor.from(data, { shape, dtype });
  };
  return { state, rows: { k: rowsOf(at), v: rowsOf(at + bytes) } };
}
