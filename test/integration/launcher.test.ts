/**
 * Launcher behaviours through real jobs: this machine's names run locally
 * (no ssh), a checkpoint job's name is taken by one mprun at a time, a rerun
 * says which epoch it resumes, checkpoint directories are not made up, and
 * the private folders of an mprun that died are removed by the next one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { app, eventually, rankProcesses, runMprun, shmFiles } from '../helpers.js';

afterEach(async () => {
  expect(await eventually(() => rankProcesses().length === 0)).toBe(true);
  expect(shmFiles()).toEqual([]);
});

const exitApp = app('exit.ts');

describe('this machine is local', () => {
  it('--host localhost:2 runs here without ssh (ssh would be refused)', async () => {
    const r = await runMprun(['--host', 'localhost:2', exitApp, 'code', '9', '0'], { env: { MPRUN_SSH_ARGS: '-p 1' } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/ssh|refused|lost/);
  });

  it('127.0.0.1 and localhost together are one node; slots still count', async () => {
    const r = await runMprun(['-n', '3', '--host', 'localhost:1,127.0.0.1:1', exitApp, 'code', '9', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/3 ranks do not fit in the 2 slots/);
  });
});
