import { describe, expect, it } from 'vitest';
import { ExitRules, type RankState } from './exit-rules.js';
import { ABORTED_EXIT_CODE } from './exit-codes.js';

const job = (n: number): ExitRules => {
  const ranks: RankState[] = Array.from({ length: n }, (_, rank) => ({ rank, node: 0, pid: 100 + rank, exited: false, connected: true, finalized: false, failure: null }));
  return new ExitRules(ranks);
};

describe('exit rules', () => {
  it('every rank finalized and exited 0: exit 0, no abort', () => {
    const j = job(3);
    for (const r of j.ranks) r.finalized = true;
    for (const r of j.ranks) expect(j.exited(r.rank, r.pid, 0, null)).toEqual({ abort: null });
    expect(j.live).toBe(0);
    expect(j.exitCode()).toBe(0);
  });

  it('a rank exiting 3 aborts the job naming the cause; the job exits 3', () => {
    const j = job(4);
    expect(j.exited(2, 102, 3, null)).toEqual({ abort: { cause: 'exited with code 3', code: 3 } });
    expect(j.startAbort(3)).toBe(true);
    // the others leave because the job aborts: not blamed
    for (const r of [0, 1, 3]) expect(j.exited(r, 100 + r, ABORTED_EXIT_CODE, null)).toEqual({ abort: null });
    expect(j.exitCode()).toBe(3);
  });

  it('a signal counts as 128 + its number', () => {
    const j = job(2);
    expect(j.exited(1, 101, null, 'SIGKILL')).toEqual({ abort: { cause: 'was killed by SIGKILL', code: 137 } });
    j.startAbort(137);
    j.exited(0, 100, null, 'SIGTERM'); // killed by the abort: not a failure of its own
    expect(j.exitCode()).toBe(137);
  });

  it('exit 0 without finalize fails only while other ranks still run', () => {
    const j = job(2);
    expect(j.exited(0, 100, 0, null)).toEqual({ abort: { cause: 'exited without calling finalize', code: 1 } });
    const last = job(1);
    expect(last.exited(0, 100, 0, null)).toEqual({ abort: null });
    expect(last.exitCode()).toBe(0);
  });

  it('the lowest rank that failed on its own gives the code, also when it failed during the abort', () => {
    const j = job(3);
    j.exited(2, 102, 5, null);
    j.startAbort(5);
    expect(j.exited(1, 101, 7, null)).toEqual({ abort: null }); // its own failure, blamed
    j.exited(0, 100, ABORTED_EXIT_CODE, null);
    expect(j.exitCode()).toBe(7);
  });

  it('an abort (world.abort, --timeout, a signal) gives its code when no rank failed on its own', () => {
    const j = job(2);
    expect(j.startAbort(124)).toBe(true);
    expect(j.startAbort(1)).toBe(false);
    j.exited(0, 100, ABORTED_EXIT_CODE, null);
    j.exited(1, 101, null, 'SIGTERM');
    expect(j.exitCode()).toBe(124);
  });

  it('a second report of the same exit is ignored', () => {
    const j = job(2);
    expect(j.exited(1, 101, 3, null)).not.toBeNull();
    expect(j.exited(1, 101, 3, null)).toBeNull();
    expect(j.live).toBe(1);
  });
});
