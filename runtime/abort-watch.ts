/**
 * Whether this rank's job is aborting, for the rank's last words
 * (launcher/rank.ts). When a node is lost, a surviving rank's operation with a
 * rank there can fail (UCX's endpoint error, a link closed) a moment before
 * mprun's abort reaches this node: the job's cause is then that node, which
 * mprun names, and the rank should leave as aborted rather than report the
 * failure as its own (a node lost mid-collective over --net ucx printed rank
 * 0's "UCX endpoint to rank 2 failed: Endpoint timeout" beside mprun's line).
 */
import { isMprunError } from '../core/errors.js';

let aborting: (() => boolean) | null = null;

/** How long a rank whose peer failed waits for the job's abort before it reports the failure. */
export const PEER_FAILURE_GRACE_MS = 5000;

/** The runtime gives the node's abort flag once it has it (bootstrap). */
export function watchAbort(probe: () => boolean): void {
  aborting = probe;
}

/** Errors a lost peer causes in the ranks that were talking to it. */
export function isPeerFailure(e: unknown): boolean {
  return isMprunError(e, 'ERR_MPRUN_UCX') || isMprunError(e, 'ERR_MPRUN_UNREACHABLE');
}

/** Waits (blocking: the rank is leaving) up to `ms` for the job to abort; whether it did. */
export function jobAborts(ms: number): boolean {
  const probe = aborting;
  if (probe === null) return false;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const until = Date.now() + ms;
  while (!probe()) {
    if (Date.now() >= until) return false;
    Atomics.wait(pause, 0, 0, 5);
  }
  return true;
}
