/** `canopy info [--json]`: what this installation can do. */

import { type CanopyInfo, info } from '../info.js';

function cudaVersion(v: number): string {
  return v ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : 'none';
}

export function formatInfo(i: CanopyInfo): string {
  const lines: string[] = [];
  lines.push(`canopy-llm ${i.version}`);
  if (i.addon.error) {
    lines.push(`addon:   not loaded: ${i.addon.error}`);
  } else {
    lines.push(`addon:   ${i.addon.path} (${i.addon.source}; ${i.addon.build?.buildSystem}, ${i.addon.build?.compiler}, N-API ${i.addon.build?.napiVersion})`);
  }
  lines.push(`cpu:     ${i.cpu.model || 'unknown model'}, ${i.cpu.threads} threads`);
  lines.push(`         features: ${i.cpu.features.join(' ') || 'none detected'}`);
  const c = i.cuda;
  lines.push(`cuda:    compiled ${c.compiled ? `yes (sm ${c.architectures})` : 'no'}, available ${c.available ? 'yes' : 'no'}`);
  if (c.compiled) lines.push(`         driver ${cudaVersion(c.driverVersion)}, runtime ${cudaVersion(c.runtimeVersion)}`);
  for (const d of c.devices) {
    const gib = (d.totalMemory / 2 ** 30).toFixed(1);
    lines.push(`         cuda:${d.index} ${d.name}, compute capability ${d.computeCapability}, ${gib} GiB, ${d.multiprocessors} SMs${d.usable ? '' : ` (not usable: ${d.reason})`}`);
  }
  if (!c.available && c.reason) lines.push(`         reason: ${c.reason}`);
  return lines.join('\n');
}

export function runInfo(options: { json?: boolean }): number {
  const i = info();
  process.stdout.write(options.json ? JSON.stringify(i, null, 2) + '\n' : formatInfo(i) + '\n');
  return i.addon.error ? 1 : 0;
}
