/**
 * The llama.cpp peer's child process (see llama-cpp.ts): reads {entry, threads, jobs} as
 * JSON on stdin, runs the jobs with node-llama-cpp loaded from `entry`, and prints one
 * line, WORKER_RESULT_MARKER + JSON, on stdout ({error} when it could not run at all).
 */

import { type LlamaCppRequest, WORKER_RESULT_MARKER, runLlamaCppJobs } from './llama-cpp.js';

async function main(): Promise<void> {
  let input = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) input += chunk as string;
  let result: unknown;
  try {
    const request = JSON.parse(input) as LlamaCppRequest & { entry: string };
    result = await runLlamaCppJobs(request.entry, request);
  } catch (e) {
    result = { error: e instanceof Error ? e.message : String(e) };
  }
  process.stdout.write(`\n${WORKER_RESULT_MARKER}${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stdout.write(`\n${WORKER_RESULT_MARKER}${JSON.stringify({ error: String(e) })}\n`);
    process.exit(1);
  },
);
