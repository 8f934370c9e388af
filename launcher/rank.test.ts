/**
 * A rank's last words (rank.ts, runtime/abort-watch.ts): a failure that a lost
 * peer causes (UCX's endpoint error, an unreachable rank) is not the rank's own
 * when the job aborts within the grace: the rank leaves quietly as aborted, and
 * mprun's line naming the lost node is the only report. Any other error, or a
 * peer failure with no abort, is reported with the rank's number, exit code 1.
 * Run in child processes: the handlers call process.exit.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { root } from '../test/helpers.js';
import { ABORTED_EXIT_CODE } from './exit-codes.js';
import { isPeerFailure, jobAborts, PEER_FAILURE_GRACE_MS } from '../runtime/abort-watch.js';
import { MprunError } from '../core/errors.js';

const dist = (f: string): string => JSON.stringify(pathToFileURL(join(root, 'dist', f)).href);

/** A rank that throws `error` (an expression over MprunError) with the abort flag rising after `abortAfterMs` (never: -1). */
function rankThrowing(error: string, abortAfterMs: number): { code: number | null; stderr: string; ms: number } {
  const program = `
    import { prepareRank } from ${dist('launcher/rank.js')};
    import { watchAbort } from ${dist('runtime/abort-watch.js')};
    import { MprunError } from ${dist('core/errors.js')};
    const t0 = Date.now();
    prepareRank();
    watchAbort(() => ${abortAfterMs} >= 0 && Date.now() - t0 >= ${abortAfterMs});
    setTimeout(() => { throw ${error}; }, 10);
  `;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', program], { encoding: 'utf8', env: { ...process.env, MPRUN_RANK: '3' }, timeout: 30_000 });
  return { code: r.status, stderr: r.stderr, ms: Date.now() - t0 };
}

describe("a rank's last words", () => {
  it('a peer failure while the job aborts: the rank leaves as aborted, saying nothing', () => {
    const r = rankThrowing(`new MprunError('ERR_MPRUN_UCX', 'UCX endpoint to rank 2 failed: Endpoint timeout')`, 300);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(ABORTED_EXIT_CODE);
  });

  it('a peer failure with no abort is reported after the grace, as the rank\'s own', () => {
    const r = rankThrowing(`new MprunError('ERR_MPRUN_UCX', 'UCX endpoint to rank 2 failed: Endpoint timeout')`, -1);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^rank 3: MprunError: UCX endpoint to rank 2 failed: Endpoint timeout/);
    expect(r.ms).toBeGreaterThanOrEqual(PEER_FAILURE_GRACE_MS);
  }, 30_000);

  it('any other error is reported at once, even while the job aborts', () => {
    const r = rankThrowing(`new TypeError('the program is wrong')`, 0);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^rank 3: TypeError: the program is wrong/);
    expect(r.ms).toBeLessThan(PEER_FAILURE_GRACE_MS);
  });

  it('which errors a lost peer causes; the wait for the abort', () => {
    expect(isPeerFailure(new MprunError('ERR_MPRUN_UCX', 'x'))).toBe(true);
    expect(isPeerFailure(new MprunError('ERR_MPRUN_UNREACHABLE', 'x'))).toBe(true);
    expect(isPeerFailure(new MprunError('ERR_MPRUN_ARG', 'x'))).toBe(false);
    expect(isPeerFailure(new Error('x'))).toBe(false);
    // No runtime in this process yet: nothing to wait for.
    expect(jobAborts(50)).toBe(false);
  });
});
