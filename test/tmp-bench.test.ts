import { it } from 'vitest';
import { runBench } from '../lib/bench/run.js';
import { formatReport } from '../lib/bench/report.js';
it('bench', async () => {
  const report = await runBench({ suites: ['linear-quant'], backend: 'cpu', quick: true });
  console.log(formatReport(report));
}, 600_000);
