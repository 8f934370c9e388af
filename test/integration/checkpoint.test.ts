/**
 * Checkpoint/restart of whole jobs through the real launcher and a real
 * mprun-rpmemd: the heat example killed and resumed to the uninterrupted
 * answer (sync and async), and every fault case: a rank SIGKILLed, the target
 * daemon killed during a checkpoint, a flipped byte in a pool file, a full
 * target disk, a lost replica, a different rank count; and the
 * `mprun checkpoints` tools. Nothing may be left behind on any path.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, readdirSync, rmSync, writeSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeHeader } from '../../transports/rpmem/header.js';
import { slotBase } from '../../transports/rpmem/store.js';
import { app, eventually, onSmallTmpfs, rankProcesses, root, runMprun, shmFiles } from '../helpers.js';

const heat = join(root, 'examples', 'heat.ts');
const ckptApp = app('ckpt.ts');

function daemons(): string[] {
  const r = spawnSync('pgrep', ['-af', 'mprun-rpmemd'], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').filter((l) => l.trim() !== '' && !l.includes('pgrep'));
}

const sumOf = (out: string): string | undefined => /sum = (\S+)/.exec(out)?.[1];

/** The size of the pool whose first part is `file`, from its header. */
function poolSize(file: string): number {
  const fd = openSync(file, 'r');
  const head = Buffer.alloc(4096);
  readSync(fd, head, 0, 4096, 0);
  closeSync(fd);
  return decodeHeader(head, file).poolSize;
}

/** Flips one bit of the byte at `at` in `file`, as a failing disk would. */
function flipByte(file: string, at: number): void {
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] ^= 0x04;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

describe('checkpoint/restart of jobs (world.protect/restore/checkpoint)', () => {
  let base: string;
  const target = (name: string): string => `localhost:${join(base, name)}`;

  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'mprun-ckpt-test-'));
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));
  afterEach(async () => {
    expect(await eventually(() => rankProcesses().length === 0, 5000)).toBe(true);
    expect(await eventually(() => daemons().length === 0, 5000), daemons().join('\n')).toBe(true);
    expect(shmFiles()).toEqual([]);
  });

  it('heat: a rank SIGKILLed between checkpoints; the same command resumes to the uninterrupted answer', async () => {
    const whole = await runMprun(['-n', '4', '--ckpt-mkdir', '--job', 'heat-whole', '--ckpt-target', target('heat'), heat, '--n', '256', '--steps', '300']);
    expect(whole.code).toBe(0);
    const answer = sumOf(whole.stdout);
    expect(answer).toMatch(/^-?\d+(\.\d+)?(e[+-]\d+)?$/);

    const args = ['-n', '4', '--ckpt-mkdir', '--job', 'heat-killed', '--ckpt-target', target('heat'), heat, '--n', '256', '--steps', '300'];
    let killed = 0;
    const first = await runMprun(args, {
      onStdout: (text) => {
        if (killed === 0 && /checkpoint epoch 3/.test(text)) {
          // SIGKILL a rank from outside, as a crashed node would lose it.
          const ranks = rankProcesses().map((l) => Number(l.split(' ')[0]));
          killed = ranks[ranks.length - 1]!;
          process.kill(killed, 'SIGKILL');
        }
      },
    });
    expect(killed).toBeGreaterThan(0);
    expect(first.code).not.toBe(0);
    expect(first.stderr).toMatch(new RegExp(`rank \\d \\(pid ${killed}\\) was killed by SIGKILL`));
    const second = await runMprun(args);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/heat: resumed from epoch (\d+)/);
    expect(Number(/resumed from epoch (\d+)/.exec(second.stdout)![1])).toBeGreaterThanOrEqual(3);
    expect(sumOf(second.stdout)).toBe(answer);
  }, 90_000);

  it("heat: the README's command (--kill-at) twice, synchronous and asynchronous checkpoints, gives the same answer", async () => {
    const whole = await runMprun(['-n', '4', '--ckpt-mkdir', '--job', 'heat-ref', '--ckpt-target', target('heat'), heat, '--n', '256', '--steps', '300', '--every', '40']);
    expect(whole.code, whole.stderr).toBe(0);
    // The answer line must be there: undefined would equal a resumed run that printed none.
    const answer = sumOf(whole.stdout);
    expect(answer).toMatch(/^-?\d+(\.\d+)?(e[+-]\d+)?$/);
    for (const mode of [[], ['--async']]) {
      const job = `heat-kill${mode.length}`;
      const args = ['-n', '4', '--ckpt-mkdir', '--job', job, '--ckpt-target', target('heat'), heat, '--n', '256', '--steps', '300', '--every', '40', '--kill-at', '130', ...mode];
      const first = await runMprun(args);
      expect(first.code).toBe(137);
      expect(first.stdout).toMatch(/kills itself with SIGKILL at step 130/);
      const second = await runMprun(args);
      expect(second.code, second.stderr).toBe(0);
      // Synchronous: epoch 3 (step 120) was committed before the kill. Asynchronous: epoch 3 was
      // only written; it commits at the next checkpoint, so epoch 2 (step 80) is the last committed.
      expect(second.stdout).toMatch(mode.length === 0 ? /resumed from epoch 3 \(step 120\)/ : /resumed from epoch 2 \(step 80\)/);
      expect(sumOf(second.stdout)).toBe(answer);
    }
  }, 90_000);

  it('the target daemon killed during a checkpoint: the job stops, and the previous epoch restores', async () => {
    const dir = join(base, 'daemon-killed');
    const args = ['-n', '2', '--ckpt-mkdir', '--job', 'dk', '--ckpt-target', `localhost:${dir}`, ckptApp, '--kib', '32768', '--epochs', '8'];
    let fired = false;
    const first = await runMprun(args, {
      onStdout: (text) => {
        if (!fired && /committed epoch 2/.test(text)) {
          fired = true;
          spawnSync('pkill', ['-9', '-f', '--', `mprun-rpmemd.js --poolset-dir ${dir}`]);
        }
      },
    });
    expect(fired).toBe(true);
    expect(first.code).not.toBe(0);
    expect(first.stderr).toMatch(/its daemon ended \(SIGKILL\)/);
    expect(first.stderr).toMatch(/checkpoint epoch \d of job dk failed on every target/);
    const last = Math.max(...[...first.stdout.matchAll(/committed epoch (\d+)/g)].map((m) => Number(m[1])));
    const second = await runMprun(args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain(`rank 0 restored epoch ${last} intact`);
    expect(second.stdout).toContain(`rank 1 restored epoch ${last} intact`);
    expect(second.stdout).toContain('done');
  }, 90_000);

  it('a byte flipped in a pool file is detected and reported; the previous epoch is used', async () => {
    const dir = join(base, 'flip');
    const args = ['-n', '2', '--ckpt-mkdir', '--job', 'flip', '--ckpt-target', `localhost:${dir}`, ckptApp, '--kib', '3000'];
    expect((await runMprun([...args, '--epochs', '3'])).code).toBe(0);
    // Epoch 3 is in slot 1 of each rank's pool; flip one bit of rank 1's data there.
    const file = join(dir, 'flip', 'rank-1.g1.part0');
    flipByte(file, slotBase(poolSize(file), 1).data + 1_500_000);

    const verify = await runMprun(['checkpoints', 'verify', '--job', 'flip', '--ckpt-target', `localhost:${dir}`], { env: { MPRUN_PROGRESS: '1' } });
    expect(verify.code).toBe(1);
    // Long transfers show a progress bar (on a terminal, or with MPRUN_PROGRESS=1).
    expect(verify.stderr).toMatch(/verifying epoch 2 on localhost:\S+ \[#+\] 100% 5\.9 MiB\/5\.9 MiB/);
    expect(verify.stdout).toMatch(/ 3 .*DAMAGED: rank 1: chunk 1 \(bytes 1048576-2097152\) fails its CRC32C/);
    expect(verify.stdout).toMatch(/ 2 .*verified/);

    const resumed = await runMprun([...args, '--epochs', '5']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/epoch 3 fails verification \(rank 1 on localhost:\S+: chunk 1 \(bytes 1048576-2097152\) fails its CRC32C\)/);
    expect(resumed.stderr).toMatch(/restored epoch 2 instead/);
    expect(resumed.stdout).toContain('rank 1 restored epoch 2 intact');
    expect(resumed.stdout).toContain('committed epoch 5');

    // Both epochs damaged: no intact checkpoint, and the job stops saying so.
    for (const slot of [0, 1]) flipByte(file, slotBase(poolSize(file), slot).data + 100);
    const none = await runMprun([...args, '--epochs', '6']);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/job flip has no intact checkpoint: epoch 5 fails verification \(rank 1 .*chunk 0 .*\); epoch 4 fails verification \(rank 1 .*chunk 0/);
  }, 90_000);

  it('a byte flipped in a pool header (the job pool, a rank pool): recovered from its backup, reported by list and verify, and the rerun resumes', async () => {
    const dir = join(base, 'header');
    const t = ['--ckpt-target', `localhost:${dir}`];
    const args = ['-n', '2', '--ckpt-mkdir', '--job', 'hdr', ...t, ckptApp, '--kib', '512'];
    expect((await runMprun([...args, '--epochs', '3'])).code).toBe(0);
    const jobPart = join(dir, 'hdr', 'job.part0');
    const rankPart = join(dir, 'hdr', 'rank-1.g1.part0');
    // Every header has its backup beside its part.
    for (const f of [jobPart, rankPart]) expect(existsSync(`${f}.hdr`)).toBe(true);

    // The case: byte 20 of job.part0 (ro_compat features). Before backups: "no checkpoints", exit 0.
    flipByte(jobPart, 20);
    const list = await runMprun(['checkpoints', 'list', '--job', 'hdr', ...t]);
    expect(list.code).toBe(1);
    expect(list.stdout).not.toMatch(/no checkpoints/);
    expect(list.stdout).toContain(`DAMAGED localhost:${dir}: the header of ${jobPart} was damaged (it fails its checksum); recovered from its backup ${jobPart}.hdr`);
    expect(list.stdout).toMatch(/job hdr: 2 ranks, 2 committed epoch\(s\)/);
    expect(list.stdout).toMatch(/ 3 .* ok/);
    expect(list.stdout).toMatch(/ 2 .* ok/);
    // Recovered on the target: the next list is clean.
    const clean = await runMprun(['checkpoints', 'list', '--job', 'hdr', ...t]);
    expect(clean.code, clean.stdout).toBe(0);
    expect(clean.stdout).not.toMatch(/DAMAGED/);

    // A rank's part: verify reports it, exits 1, and still reads every chunk of both epochs.
    flipByte(rankPart, 20);
    const verify = await runMprun(['checkpoints', 'verify', '--job', 'hdr', ...t]);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain(`the header of ${rankPart} was damaged (it fails its checksum); recovered from its backup`);
    expect(verify.stdout).toMatch(/ 3 .*verified/);
    expect(verify.stdout).toMatch(/ 2 .*verified/);

    // A damaged backup is rewritten from the header.
    flipByte(`${rankPart}.hdr`, 20);
    const backup = await runMprun(['checkpoints', 'list', '--job', 'hdr', ...t]);
    expect(backup.code).toBe(1);
    expect(backup.stdout).toContain(`the header backup ${rankPart}.hdr was damaged (it fails its checksum); rewritten from the header of ${rankPart}`);
    expect((await runMprun(['checkpoints', 'list', '--job', 'hdr', ...t])).code).toBe(0);

    // Both headers damaged, then the rerun: it resumes from the newest epoch, its data intact,
    // and the target's log says what it recovered.
    flipByte(jobPart, 20);
    flipByte(join(dir, 'hdr', 'rank-0.g1.part0'), 20);
    const rerun = await runMprun([...args, '--epochs', '5']);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stdout).toContain('rank 0 restored epoch 3 intact');
    expect(rerun.stdout).toContain('rank 1 restored epoch 3 intact');
    expect(rerun.stdout).toContain('committed epoch 5');
    expect(rerun.stdout).toContain('done');
    expect(rerun.stderr).toContain(`the header of ${jobPart} was damaged (it fails its checksum); recovered from its backup`);
    expect(rerun.stderr).toContain(`the header of ${join(dir, 'hdr', 'rank-0.g1.part0')} was damaged`);

    // Both copies of a rank's header damaged: the pool cannot be opened; list says which file, exit 1.
    flipByte(rankPart, 20);
    flipByte(`${rankPart}.hdr`, 20);
    const lost = await runMprun(['checkpoints', 'list', '--job', 'hdr', ...t]);
    expect(lost.code).toBe(1);
    expect(lost.stdout).toMatch(/ 5 .*DAMAGED: rank 1: /);
    expect(lost.stdout).toContain(`${rankPart}: the pool header fails its checksum, and its backup ${rankPart}.hdr fails its checksum: the pool cannot be opened (EINVAL)`);
    expect(lost.stdout).not.toMatch(/\(EINVAL\) \(EINVAL\)/);

    // Both copies of the job pool's header: never "no checkpoints"; the file is named, and the rerun stops naming it.
    flipByte(jobPart, 20);
    flipByte(`${jobPart}.hdr`, 20);
    const gone = await runMprun(['checkpoints', 'list', '--job', 'hdr', ...t]);
    expect(gone.code).toBe(1);
    expect(gone.stdout).not.toMatch(/no checkpoints/);
    expect(gone.stdout).toMatch(/job hdr: its pools are damaged; no committed epoch can be read/);
    expect(gone.stdout).toContain(`${jobPart}: the pool header fails its checksum, and its backup ${jobPart}.hdr fails its checksum`);
    expect(gone.stdout).toContain(`DAMAGED localhost:${dir}: the job pool hdr/job.set cannot be read, nor its commit records: ${jobPart}:`);
    const stopped = await runMprun([...args, '--epochs', '6']);
    expect(stopped.code).not.toBe(0);
    expect(stopped.stderr).toContain(`${jobPart}: the pool header fails its checksum, and its backup ${jobPart}.hdr fails its checksum: the pool cannot be opened (EINVAL)`);
    expect(stopped.stdout).not.toContain('fresh start');

    // The job pool's part gone (its set file there): damage too, never "no checkpoints".
    rmSync(jobPart);
    const partless = await runMprun(['checkpoints', 'list', '--job', 'hdr', ...t]);
    expect(partless.code).toBe(1);
    expect(partless.stdout).toContain(`DAMAGED localhost:${dir}: the job pool hdr/job.set has lost its part, and with it the commit records`);

    // remove takes the backups too.
    expect((await runMprun(['checkpoints', 'remove', '--job', 'hdr', ...t])).code).toBe(0);
    expect(existsSync(join(dir, 'hdr'))).toBe(false);
  }, 120_000);

  it('a full target disk: a clear error, and the previous epoch intact', async (ctx) => {
    const dir = join(base, 'full');
    await onSmallTmpfs(ctx, dir, '8m', async () => {
      const args = ['-n', '2', '--ckpt-mkdir', '--job', 'full', '--ckpt-target', `localhost:${dir}`, ckptApp, '--kib', '64'];
      expect((await runMprun([...args, '--epochs', '2'])).code).toBe(0);
      // From epoch 3 the state grows by 4 MiB a rank: new pools that do not fit.
      const grown = await runMprun([...args, '--epochs', '4', '--grow-at', '3', '--grow-kib', '4096']);
      expect(grown.code).not.toBe(0);
      expect(grown.stderr).toMatch(/posix_fallocate failed: ENOSPC/);
      expect(grown.stderr).toMatch(/checkpoint epoch 3 of job full failed on every target.*epoch 2 stays the last one/);
      const verify = await runMprun(['checkpoints', 'verify', '--job', 'full', '--ckpt-target', `localhost:${dir}`]);
      expect(verify.code).toBe(0);
      expect(verify.stdout).toMatch(/ 2 .*verified/);
      const again = await runMprun([...args, '--epochs', '2']);
      expect(again.stdout).toContain('rank 0 restored epoch 2 intact');
      expect(again.code).toBe(0);
    });
  }, 90_000);

  it('a checkpoint without restore() whose state outgrew the committed pools keeps them: a failure before its commit leaves the last epoch', async (ctx) => {
    const dir = join(base, 'adopt');
    await onSmallTmpfs(ctx, dir, '8m', async () => {
      const args = ['-n', '2', '--ckpt-mkdir', '--job', 'adopt', '--ckpt-target', `localhost:${dir}`, ckptApp];
      expect((await runMprun([...args, '--kib', '64', '--epochs', '2'])).code).toBe(0);
      // No restore(): the epochs go on after 2, in pools of 4 MiB a rank that do not fit here.
      // The committed generation's pools were removed to make room for them before.
      const grown = await runMprun([...args, '--kib', '4096', '--epochs', '1', '--no-restore']);
      expect(grown.code).not.toBe(0);
      expect(grown.stderr).toMatch(/ENOSPC/);
      const verify = await runMprun(['checkpoints', 'verify', '--job', 'adopt', '--ckpt-target', `localhost:${dir}`]);
      expect(verify.stdout + verify.stderr).toMatch(/ 2 .*verified/);
      expect(verify.code).toBe(0);
      const again = await runMprun([...args, '--kib', '64', '--epochs', '3']);
      expect(again.stdout).toContain('rank 0 restored epoch 2 intact');
      expect(again.stdout).toContain('rank 1 restored epoch 2 intact');
      expect(again.code, again.stderr).toBe(0);
    });
  }, 90_000);

  it('a target one rank drops is dropped by all: the epochs it holds stay restorable', async () => {
    const a = join(base, 'drop-a');
    const b = join(base, 'drop-b');
    const args = ['-n', '2', '--ckpt-mkdir', '--job', 'drop', '--ckpt-target', `localhost:${a}`, '--ckpt-target', `localhost:${b}`, ckptApp, '--kib', '256', '--epochs', '6'];
    // Rank 1's pool on b fails its 10th persist: in epoch 3 (about 4 a checkpoint).
    const first = await runMprun(args, { env: { MPRUN_RPMEMD_FAIL_PERSIST: `10:drop-b/drop/rank-1.` } });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`committed epoch 2 (524320 bytes) on localhost:${a} localhost:${b}`);
    expect(first.stderr).toMatch(new RegExp(`rank 1: checkpoint target localhost:${b} dropped: epoch 3`));
    expect(first.stdout).toContain(`committed epoch 6 (524320 bytes) on localhost:${a}\n`);
    // Rank 0 stopped writing b too: it went on overwriting its slots there, which b's last commit
    // records (epochs 1 and 2) name, and b had no intact epoch left.
    expect(first.stderr).toMatch(new RegExp(`rank 0: checkpoint target localhost:${b} dropped: epoch 3`));
    rmSync(a, { recursive: true, force: true });
    const second = await runMprun(args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('rank 0 restored epoch 2 intact');
    expect(second.stdout).toContain('rank 1 restored epoch 2 intact');
  }, 90_000);

  it('one replica of two lost: restore from the other, and both hold the epochs after', async () => {
    const a = join(base, 'replica-a');
    const b = join(base, 'replica-b');
    const args = ['-n', '2', '--ckpt-mkdir', '--job', 'rep', '--ckpt-target', `localhost:${a}`, '--ckpt-target', `localhost:${b}`, ckptApp, '--kib', '512'];
    const first = await runMprun([...args, '--epochs', '3']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`committed epoch 3 (1048608 bytes) on localhost:${a} localhost:${b}`);
    rmSync(a, { recursive: true, force: true });
    // A third target that cannot be reached at all is reported, and the job goes on with the others.
    const second = await runMprun(['--ckpt-target', 'unreachable.invalid:/x', ...args, '--epochs', '5']);
    expect(second.stderr).toMatch(/checkpoint target unreachable.invalid:\/x is unavailable .*going on with the others/);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('rank 0 restored epoch 3 intact');
    expect(second.stdout).toContain('rank 1 restored epoch 3 intact');
    expect(second.stdout).toContain(`committed epoch 5 (1048608 bytes) on localhost:${a} localhost:${b}`);
    const list = await runMprun(['checkpoints', 'list', '--job', 'rep', '--ckpt-target', `localhost:${a}`, '--ckpt-target', `localhost:${b}`]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/job rep: 2 ranks, 2 committed epoch\(s\)/);
    expect(list.stdout).toMatch(new RegExp(` 5 .*localhost:${a} ok, localhost:${b} ok`));

    // A different rank count is refused before any rank starts.
    const other = await runMprun(['-n', '3', '--ckpt-mkdir', '--job', 'rep', '--ckpt-target', `localhost:${a}`, ckptApp]);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain('job rep was checkpointed by 2 ranks; this run asks for 3. Run it with -n 2');

    const rm = await runMprun(['checkpoints', 'remove', '--job', 'rep', '--ckpt-target', `localhost:${a}`, '--ckpt-target', `localhost:${b}`]);
    expect(rm.code).toBe(0);
    expect(rm.stdout).toMatch(/removed 3 pool\(s\) of job rep/);
    expect(existsSync(join(a, 'rep')) || existsSync(join(b, 'rep'))).toBe(false);
    const none = await runMprun(['checkpoints', 'list', '--job', 'rep', '--ckpt-target', `localhost:${a}`]);
    expect(none.stdout).toMatch(/no checkpoints/);
    expect(readdirSync(a)).toEqual([]);
  }, 90_000);

  it('replicas whose histories diverged (runs that each reached one): the history the latest run continued is restored', async () => {
    const a = join(base, 'fork-a');
    const b = join(base, 'fork-b');
    const run = (targets: string[], epochs: number): ReturnType<typeof runMprun> =>
      runMprun(['-n', '2', '--ckpt-mkdir', '--job', 'fork', ...targets.flatMap((t) => ['--ckpt-target', `localhost:${t}`]), ckptApp, '--kib', '64', '--epochs', String(epochs)]);
    const both = await run([a, b], 2);
    expect(both.code, both.stderr).toBe(0);
    // Only A reached: epochs 3 to 6 there. Then only B: from its epoch 2, epochs 3 and 4 there.
    const onA = await run([a], 6);
    expect(onA.code, onA.stderr).toBe(0);
    expect(onA.stdout).toContain(`committed epoch 6 (`);
    const onB = await run([b], 4);
    expect(onB.code, onB.stderr).toBe(0);
    expect(onB.stdout).toContain('rank 0 restored epoch 2 intact');
    // Both again: B's epoch 4 is what the latest run left, though A holds epochs 5 and 6 of the history left before.
    const again = await run([a, b], 5);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('rank 0 restored epoch 4 intact');
    expect(again.stdout).toContain('rank 1 restored epoch 4 intact');
    expect(again.stdout).toContain(`committed epoch 5 (`);
    // Epoch 5 of the latest history is on both now, and listed first.
    const list = await runMprun(['checkpoints', 'list', '--job', 'fork', '--ckpt-target', `localhost:${a}`, '--ckpt-target', `localhost:${b}`]);
    expect(list.code, list.stdout).toBe(0);
    const rows = list.stdout.split('\n').filter((l) => /^\s+\d+ /.test(l));
    expect(rows[0], list.stdout).toMatch(new RegExp(`^\\s+5 .*localhost:${a} ok, localhost:${b} ok`));
    await runMprun(['checkpoints', 'remove', '--job', 'fork', '--ckpt-target', `localhost:${a}`, '--ckpt-target', `localhost:${b}`]);
  }, 120_000);

  it("a run whose clock is behind the last one's still commits the newer epochs (commit times never go back)", async () => {
    const dir = join(base, 'clock');
    // Every rank of the second run sees a wall clock an hour behind (a rank 0 on another host, an NTP step).
    const behind = join(base, 'clock-behind.mjs');
    writeFileSync(behind, 'const real = Date.now;\nDate.now = () => real() - 3_600_000;\n');
    const run = (epochs: number, env: Record<string, string> = {}): ReturnType<typeof runMprun> =>
      runMprun(['-n', '2', '--ckpt-mkdir', '--job', 'clock', '--ckpt-target', `localhost:${dir}`, ckptApp, '--kib', '64', '--epochs', String(epochs)], { env });
    const first = await run(2);
    expect(first.code, first.stderr).toBe(0);
    const second = await run(3, { MPRUN_NODE_ARGS: `--import ${behind}` });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('rank 0 restored epoch 2 intact');
    expect(second.stdout).toContain('committed epoch 3 (');
    // Epoch 3 is the newest, though its rank 0 read a clock an hour behind epoch 2's.
    const third = await run(4);
    expect(third.code, third.stderr).toBe(0);
    expect(third.stdout).toContain('rank 0 restored epoch 3 intact');
    await runMprun(['checkpoints', 'remove', '--job', 'clock', '--ckpt-target', `localhost:${dir}`]);
  }, 60_000);

  it('asynchronous checkpoints: finalize commits the last one, and a restart restores it', async () => {
    const dir = join(base, 'async');
    const args = ['-n', '2', '--ckpt-mkdir', '--job', 'async', '--ckpt-target', `localhost:${dir}`, ckptApp, '--kib', '2048', '--async'];
    const first = await runMprun([...args, '--epochs', '3']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('wrote epoch 3');
    const second = await runMprun([...args, '--epochs', '4', '--wait']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('rank 0 restored epoch 3 intact');
    expect(second.stdout).toContain('rank 1 restored epoch 3 intact');
    // checkpointWait() says what a synchronous checkpoint says: the job's bytes, the targets that committed.
    expect(second.stdout).toContain(`waited for epoch 4 (4194336 bytes) on localhost:${dir}`);
  });

  it('without --job, restore() is a fresh start and checkpoint() says what to pass', async () => {
    const r = await runMprun(['-n', '1', ckptApp, '--epochs', '1']);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toContain('fresh start');
    expect(r.stderr).toContain('checkpoint() needs a checkpoint job: run with mprun --job NAME');
  });
});
