/**
 * A checkpointing script that ends without finalize(): with --job it must
 * finalize at exit as any script does, committing a pending asynchronous
 * epoch, so that the rerun resumes from it (it hung before: the pools'
 * connections kept the ranks' event loops alive, so beforeExit never came).
 * And a checkpoint only one rank calls hangs, saying where.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { app, eventually, rankProcesses, runMprun, shmFiles } from '../helpers.js';

function daemons(): string[] {
  const r = spawnSync('pgrep', ['-af', 'mprun-rpmemd'], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').filter((l) => l.trim() !== '' && !l.includes('pgrep'));
}

describe('a checkpointing script that ends without finalize()', () => {
  let base: string;
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'mprun-ckpt-exit-'));
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));
  afterEach(async () => {
    expect(await eventually(() => rankProcesses().length === 0, 5000)).toBe(true);
    expect(await eventually(() => daemons().length === 0, 5000), daemons().join('\n')).toBe(true);
    expect(shmFiles()).toEqual([]);
  });

  it('--timeout says where a rank that alone checkpoints waits', async () => {
    const dir = join(base, 'hang');
    mkdirSync(dir);
    const r = await runMprun(['-n', '2', '--timeout', '4', '--job', 'hang', '--ckpt-target', `localhost:${dir}`, app('hang.ts'), 'ckpt']);
    expect(r.code).toBe(124);
    expect(r.stderr).toMatch(/rank 0: \w+ on the world \(as its rank 0 of 2\) in checkpoint\(\), for [\d.]+ s, called at \S*hang\.ts:24:\d+/);
    expect(r.stderr).toMatch(/rank 1: not blocked in an mprun call/);
  });

  for (const mode of ['async', 'sync'] as const) {
    it(`exits by itself and commits its last (${mode}) epoch`, async () => {
      const dir = join(base, mode);
      mkdirSync(dir);
      const run = (): ReturnType<typeof runMprun> => runMprun(['-n', '2', '--timeout', '30', '--job', `end-${mode}`, '--ckpt-target', `localhost:${dir}`, app('ckpt-end.ts'), mode]);
      const first = await run();
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      expect(first.stdout).toContain('fresh start');
      expect(first.stdout).toContain('checkpointed counter 1');
      const second = await run();
      expect(second.code).toBe(0);
      expect(second.stdout).toContain('resumed epoch 1 counter 1');
      expect(second.stdout).toContain('checkpointed counter 2');
    });
  }
});
