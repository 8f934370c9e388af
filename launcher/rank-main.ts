/**
 * The first module of every rank process: ties the rank's life to mprun's,
 * then runs the (already compiled) app with the argv it expects.
 */
import { pathToFileURL } from 'node:url';
import { native } from '../native/index.js';
import { isMprunError } from '../core/errors.js';
import { ABORTED_EXIT_CODE } from './exit-codes.js';

// A rank whose job is aborting (another rank died, mprun was signalled) sees
// ERR_MPRUN_ABORTED from its waits. It did not fail: it leaves quietly with a
// code mprun knows, and mprun has already said why the job stops.
// Anything else is reported as Node would (the error, its stack and fields) with exit code 1.
// The report starts with the rank, so that a job's error lines say who raised them.
const leaveIfAborted = (e: unknown): void => {
  if (isMprunError(e, 'ERR_MPRUN_ABORTED')) process.exit(ABORTED_EXIT_CODE);
  console.error(`rank ${process.env.MPRUN_RANK ?? '?'}:`, e);
  process.exit(1);
};
process.on('uncaughtException', leaveIfAborted);
process.on('unhandledRejection', leaveIfAborted);

// Node writes to a pipe asynchronously: what is still queued when the program
// calls process.exit() is lost. A rank's stdout and stderr are pipes to its
// agent; make their writes blocking (as C's stdio and a terminal are), so
// that every byte written before exit reaches mprun. A full pipe then holds
// the writer until the agent reads, which is the back-pressure a job wants.
for (const stream of [process.stdout, process.stderr]) {
  (stream as unknown as { _handle?: { setBlocking?(on: boolean): void } })._handle?.setBlocking?.(true);
}

const [nodePath, , app, ...args] = process.argv;
if (app === undefined) {
  process.stderr.write('mprun rank-main: no app given\n');
  process.exit(2);
}
const parent = Number(process.env.MPRUN_PARENT_PID);
if (Number.isInteger(parent) && parent > 0) native().dieWithParent(parent);
const cpu = process.env.MPRUN_BIND_CPU;
if (cpu !== undefined && cpu !== '') native().setAffinity([Number(cpu)]);
process.argv = [nodePath!, app, ...args];
await import(pathToFileURL(app).href);
