/**
 * Running a program as a rank: what every rank process sets up before the
 * program's first line (started by mprun's agent as a rank bundle, whose
 * prelude is rank-prelude.ts, or through launcher/rank-main.ts; or directly
 * by a PMIx server through `mprun --direct`).
 */
import { pathToFileURL } from 'node:url';
import { isMprunError } from '../core/errors.js';
import { ABORTED_EXIT_CODE } from './exit-codes.js';
import { isPeerFailure, jobAborts, PEER_FAILURE_GRACE_MS } from '../runtime/abort-watch.js';

/** Error handlers and blocking stdio: what a rank needs before its program runs. */
export function prepareRank(): void {
  // A rank whose job is aborting (another rank died, mprun was signalled) sees
  // ERR_MPRUN_ABORTED from its waits. It did not fail: it leaves quietly with a
  // code mprun knows, and mprun has already said why the job stops.
  // Anything else is reported as Node would (the error, its stack and fields) with exit code 1.
  // The report starts with the rank, so that a job's error lines say who raised them.
  const leaveIfAborted = (e: unknown): void => {
    if (isMprunError(e, 'ERR_MPRUN_ABORTED')) process.exit(ABORTED_EXIT_CODE);
    // A peer's node lost: what failed here is a consequence, and mprun names the cause (abort-watch.ts).
    if (isPeerFailure(e) && jobAborts(PEER_FAILURE_GRACE_MS)) process.exit(ABORTED_EXIT_CODE);
    console.error(`rank ${process.env.MPRUN_RANK ?? process.env.PMIX_RANK ?? '?'}:`, e);
    process.exit(1);
  };
  process.on('uncaughtException', leaveIfAborted);
  process.on('unhandledRejection', leaveIfAborted);

  // Node writes to a pipe asynchronously: what is still queued when the program
  // calls process.exit() is lost. A rank's stdout and stderr are pipes to its
  // agent (or its launcher); make their writes blocking (as C's stdio and a
  // terminal are), so that every byte written before exit reaches the output.
  // A full pipe then holds the writer until the reader reads: the back-pressure a job wants.
  for (const stream of [process.stdout, process.stderr]) {
    (stream as unknown as { _handle?: { setBlocking?(on: boolean): void } })._handle?.setBlocking?.(true);
  }
}

/** Runs the (compiled) program `app` with `args` as its argv, as a rank. */
export async function runAsRank(app: string, args: readonly string[]): Promise<void> {
  prepareRank();
  process.argv = [process.argv[0]!, app, ...args];
  await import(pathToFileURL(app).href);
}
