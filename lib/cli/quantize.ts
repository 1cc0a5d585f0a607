/** `canopy quantize IN OUT --type Q4_K_M`: quantize() with a progress bar on stderr (a TTY only). */

import { ArgumentError } from '../errors.js';
import { QUANT_PRESET_NAMES, type QuantizeProgress, isQuantPreset, quantize } from '../quantize/index.js';
import { num } from './options.js';
import { setThreads } from '../native/threads.js';

export interface QuantizeCliOptions {
  type: string;
  threads?: string;
  quiet?: boolean;
}

/** One line of the bar: [#####.....] 42% 17/48 blk.3.ffn_down.weight Q6_K */
export function progressLine(p: QuantizeProgress, width = 30): string {
  const frac = p.totalValues > 0 ? p.doneValues / p.totalValues : 1;
  const filled = Math.round(frac * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(frac * 100)).padStart(3)}% ${p.done}/${p.count} ${p.tensor} ${p.storage}`;
}

export async function runQuantizeCli(input: string, output: string, opts: QuantizeCliOptions): Promise<number> {
  if (!isQuantPreset(opts.type)) throw new ArgumentError('--type', QUANT_PRESET_NAMES.join(', '), opts.type);
  const threads = num(opts.threads, 'threads', true);
  if (threads !== undefined) setThreads(threads);
  const tty = process.stderr.isTTY === true && !opts.quiet;
  const start = performance.now();
  const result = await quantize(input, output, {
    type: opts.type,
    ...(tty ? { onProgress: (p: QuantizeProgress) => process.stderr.write(`\r\x1b[2K${progressLine(p)}`) } : {}),
  });
  if (tty) process.stderr.write('\n');
  const counts = new Map<string, number>();
  for (const s of result.tensors.values()) counts.set(s, (counts.get(s) ?? 0) + 1);
  const mix = [...counts.entries()].map(([s, n]) => `${n} ${s}`).join(', ');
  process.stdout.write(`${output}: ${opts.type}, ${(result.bytes / 2 ** 20).toFixed(1)} MiB, ${result.tensors.size} tensors (${mix}), ${((performance.now() - start) / 1000).toFixed(1)} s\n`);
  return 0;
}
