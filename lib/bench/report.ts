/** How `canopy bench` prints a report: the text tables (default) or CSV (--csv). JSON is the report itself. */

import { type BenchRow, fmt, formatPeer, formatTable } from './harness.js';
import { describeMachine } from './machine.js';
import type { BenchReport } from './run.js';

/** The whole report as text: machine, the rows of each suite, peers (with why absent), skipped and failed steps. */
export function formatReport(report: BenchReport): string {
  const out: string[] = [];
  if (report.fallbackReason) out.push(`backend: cpu (CUDA not used: ${report.fallbackReason})`);
  out.push(`system: ${describeMachine(report.machine)}`);
  out.push(formatTable(report.rows, report.limits));
  out.push('', 'peers:');
  for (const p of report.peers) out.push(`  ${p.name}: ${p.available ? 'measured' : 'absent'} — ${p.detail}`);
  // Per-row absences whose reason differs from the peer's own line (a backend refusing a shape, a job failing).
  const general = new Set(report.peers.filter((p) => !p.available).map((p) => p.detail));
  const specific = new Set<string>();
  for (const r of report.rows) {
    for (const p of r.peers) if (p.absent && !general.has(p.absent)) specific.add(`  ${r.suite} ${r.name} ${configText(r)}: ${p.name} absent — ${p.absent}`);
  }
  out.push(...specific);
  if (report.skipped.length) {
    out.push('', 'skipped:');
    for (const s of report.skipped) out.push(`  ${s.label}: ${s.reason}`);
  }
  if (report.errors.length) {
    out.push('', 'failed:');
    for (const e of report.errors) out.push(`  ${e.label}: ${e.error}`);
  }
  out.push('', `${report.rows.length} rows in ${(report.durationMs / 1000).toFixed(1)} s (${report.quick ? 'quick' : 'full'} run, ${report.date})`);
  if (report.otherCpuShare !== undefined) {
    const share = report.otherCpuShare;
    out.push(`other processes used ${(share * 100).toFixed(0)}% of the machine's CPU during the run${share > 0.1 ? ': the figures are noisy (compare runs on a quiet machine)' : ''}`);
  }
  return out.join('\n');
}

function configText(r: BenchRow): string {
  return Object.entries(r.config)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

/** A CSV field: quoted when it holds a comma, quote or newline (quotes doubled). */
export function csvField(v: string | number | undefined): string {
  if (v === undefined) return '';
  const s = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : v;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Columns of `canopy bench --csv`, one line per row (peers and notes as "name value; ..." text). */
export const CSV_COLUMNS = [
  'suite',
  'benchmark',
  'backend',
  'config',
  'median_ms',
  'p10_ms',
  'p90_ms',
  'repeats',
  'metric',
  'achieved',
  'limit',
  'limit_what',
  'start_rss_mib',
  'peak_rss_mib',
  'peak_device_mib',
  'peers',
  'notes',
  'formula',
] as const;

/** The rows as CSV (header first, RFC 4180 quoting, \n line ends). */
export function formatCsv(report: BenchReport): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of report.rows) {
    const cells: Array<string | number | undefined> = [
      r.suite,
      r.name,
      r.backend,
      configText(r),
      r.timing.medianMs,
      r.timing.p10Ms,
      r.timing.p90Ms,
      r.timing.repeats,
      r.metric,
      r.value,
      r.limit?.value,
      r.limit?.what,
      r.memory?.startRssMiB,
      r.memory?.peakRssMiB,
      r.memory?.peakDeviceMiB,
      r.peers.map((p) => [formatPeer(p), ...Object.entries(p.details ?? {}).map(([k, v]) => `${k} ${typeof v === 'number' ? fmt(v) : v}`)].join(', ')).join('; '),
      Object.entries(r.notes ?? {})
        .map(([k, v]) => `${k} ${typeof v === 'number' ? fmt(v) : v}`)
        .join('; '),
      r.formula,
    ];
    lines.push(cells.map(csvField).join(','));
  }
  return lines.join('\n') + '\n';
}
