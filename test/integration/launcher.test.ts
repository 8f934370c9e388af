/**
 * Launcher behaviours through real jobs: this machine's names run locally
 * (no ssh), a checkpoint job's name is taken by one mprun at a time, a rerun
 * says which epoch it resumes, checkpoint directories are not made up, and
 * the private folders of an mprun that died are removed by the next one.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { app, eventually, rankProcesses, root, runMprun, shmFiles, type JobResult } from '../helpers.js';

function daemons(): string[] {
  const r = spawnSync('pgrep', ['-af', 'mprun-rpmemd'], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').filter((l) => l.trim() !== '' && !l.includes('pgrep'));
}

afterEach(async () => {
  expect(await eventually(() => rankProcesses().length === 0)).toBe(true);
  expect(shmFiles()).toEqual([]);
});

const exitApp = app('exit.ts');
const ckptApp = app('ckpt.ts');

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

describe('checkpoint job names, reruns and directories', () => {
  let base: string;
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'ckpt-launcher-test-'));
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));
  afterEach(async () => {
    expect(await eventually(() => daemons().length === 0, 5000), daemons().join('\n')).toBe(true);
  });

  it('a second mprun with the same fresh --job is refused at once, naming the mprun that holds it', async () => {
    const args = ['-n', '2', '--ckpt-mkdir', '--job', 'twin', '--ckpt-target', `localhost:${join(base, 'twin')}`, ckptApp, '--kib', '16', '--epochs', '2', '--hold-ms', '2000'];
    let second: Promise<JobResult> | null = null;
    let firstPid = 0;
    const first = await runMprun(args, {
      onStart: (child) => (firstPid = child.pid!),
      onStdout: (text) => {
        if (second === null && text.includes('fresh start')) second = runMprun(args);
      },
    });
    expect(first.code, first.stderr).toBe(0);
    expect(second).not.toBeNull();
    const r = await second!;
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`mprun: job twin is in use by mprun pid ${firstPid}`);
    expect(r.stdout).toBe('');
    expect(r.ms).toBeLessThan(first.ms);
    // Once the first is done, the name is free again (and the job resumes).
    const third = await runMprun(args.slice(0, -2));
    expect(third.code, third.stderr).toBe(0);
    expect(existsSync(join(base, 'twin', 'twin.lock'))).toBe(false); // the lock goes with the job
  });

  it('a rerun says which epoch it resumes from, when it was committed and its size', async () => {
    const args = ['-n', '2', '--ckpt-mkdir', '--job', 'again', '--ckpt-target', `localhost:${join(base, 'again')}`, ckptApp, '--kib', '16', '--epochs', '3'];
    const first = await runMprun(args);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).not.toContain('resuming');
    const second = await runMprun(args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/mprun: resuming job again from epoch 3 \(committed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, 32\.0 KiB\)/);
    expect(second.stdout).toContain('restored epoch 3 intact');
  });

  it('mprun checkpoints list without --job lists every job of the targets', async () => {
    const target = `localhost:${join(base, 'many')}`;
    for (const job of ['alpha', 'beta']) {
      const r = await runMprun(['-n', '1', '--ckpt-mkdir', '--job', job, '--ckpt-target', target, ckptApp, '--kib', '4', '--epochs', '1']);
      expect(r.code, r.stderr).toBe(0);
    }
    const list = await runMprun(['checkpoints', 'list', '--ckpt-target', target]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^job alpha: 1 ranks, 1 committed epoch\(s\)\n[^]*\n\njob beta: 1 ranks, 1 committed epoch\(s\)\n/);
    const none = await runMprun(['checkpoints', 'list', '--ckpt-target', `localhost:${join(base, 'none')}`]);
    expect(none.code).toBe(0);
    expect(none.stdout).toContain('no checkpoint jobs on');
    const verify = await runMprun(['checkpoints', 'verify', '--ckpt-target', target]);
    expect(verify.code).toBe(2);
    expect(verify.stderr).toContain('--job NAME is required');
  });

  it('a --ckpt-target directory that does not exist is an error, unless --ckpt-mkdir (mprun makes only its default one)', async () => {
    const fresh = join(base, 'fresh');
    const first = await runMprun(['-n', '1', '--job', 'fresh', '--ckpt-target', `localhost:${fresh}`, ckptApp, '--kib', '4', '--epochs', '1']);
    expect(first.code).toBe(1);
    expect(first.stderr).toContain(`mprun: checkpoint directory ${fresh} does not exist; create it, or add --ckpt-mkdir`);
    expect(existsSync(fresh)).toBe(false);
    const deep = join(base, 'no', 'such', 'dir');
    const r = await runMprun(['-n', '1', '--job', 'deep', '--ckpt-target', `localhost:${deep}`, ckptApp, '--kib', '4', '--epochs', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`mprun: checkpoint directory ${deep} does not exist; create it, or add --ckpt-mkdir`);
    expect(existsSync(join(base, 'no'))).toBe(false);
    const ok = await runMprun(['-n', '1', '--job', 'deep', '--ckpt-target', `localhost:${deep}`, '--ckpt-mkdir', ckptApp, '--kib', '4', '--epochs', '1']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(existsSync(join(deep, 'deep', 'job.set'))).toBe(true);
    // On a remote target (ssh stood in for by a local shell), the same rule, checked there.
    const remote = await runMprun(['-n', '1', '--job', 'deep', '--ckpt-target', `otherhost:${join(base, 'far', 'away')}`, ckptApp, '--kib', '4', '--epochs', '1'], {
      env: { RPMEM_SSH: join(root, 'test', 'fixtures', 'local-ssh.sh') },
    });
    expect(remote.code).toBe(1);
    expect(remote.stderr).toContain(`checkpoint directory ${join(base, 'far', 'away')} does not exist on otherhost; create it, or add --ckpt-mkdir`);
    expect(existsSync(join(base, 'far'))).toBe(false);
  });
});

/** The private folder of the mprun with this pid (it names its owner), or undefined. */
function folderOf(pid: number): string | undefined {
  return readdirSync(tmpdir())
    .filter((n) => n.startsWith('mprun-'))
    .map((n) => join(tmpdir(), n))
    .find((d) => {
      try {
        return readFileSync(join(d, 'mprun-owner'), 'utf8').startsWith(`${pid} `);
      } catch {
        return false;
      }
    });
}

describe('leftovers', () => {
  it('a reader that goes away (mprun ... | head) ends the job quietly with 141 and leaves nothing', async () => {
    let dir: string | undefined;
    let closed = false;
    const r = await runMprun(['-n', '2', app('flood.ts'), '2000000'], {
      onStdout: (_text, child) => {
        if (closed) return;
        closed = true;
        dir = folderOf(child.pid!);
        child.stdout!.destroy(); // as head does once it has its lines
      },
    });
    expect(r.code).toBe(128 + 13); // SIGPIPE's, as a shell reports a C program's
    expect(r.stderr).not.toMatch(/EPIPE|Error|    at /);
    expect(dir).toBeDefined();
    expect(existsSync(dir!)).toBe(false);
  });

  it("the commands that only print (--help, info, checkpoints list) end as quietly when their reader is gone", async () => {
    for (const args of [['--help'], ['info'], ['checkpoints', 'list']]) {
      const r = await runMprun(args, { onStart: (child) => child.stdout!.destroy() });
      expect(r.code, args.join(' ')).toBe(128 + 13);
      expect(r.stderr, args.join(' ')).not.toMatch(/EPIPE|Error|    at /);
    }
  });

  it("the folder of a SIGKILLed mprun is removed by the next mprun; a live job's folder is not", async () => {
    // A live job that must keep its folder.
    let live: ReturnType<typeof runMprun> | null = null;
    let liveChild: { pid?: number; kill(s: NodeJS.Signals): boolean } | null = null;
    const liveStarted = new Promise<void>((ready) => {
      live = runMprun(['-n', '1', exitApp, 'sleep'], {
        onStart: (c) => (liveChild = c),
        onStdout: (text) => {
          if (text.includes('pid ')) ready();
        },
      });
    });
    await liveStarted;
    const liveDir = folderOf(liveChild!.pid!);
    expect(liveDir).toBeDefined();

    let killedPid = 0;
    let killedDir: string | undefined;
    let sent = false;
    const killed = await runMprun(['-n', '2', exitApp, 'sleep'], {
      onStdout: (text, child) => {
        if (!sent && (text.match(/pid \d+/g) ?? []).length === 2) {
          sent = true;
          killedPid = child.pid!;
          killedDir = folderOf(killedPid);
          child.kill('SIGKILL');
        }
      },
    });
    expect(killed.signal).toBe('SIGKILL');
    expect(killedDir).toBeDefined();
    expect(existsSync(join(killedDir!, 'control.sock'))).toBe(true); // left behind, sockets and all
    expect(await eventually(() => rankProcesses().filter((l) => l.includes(killedDir!)).length === 0)).toBe(true);

    const next = await runMprun(['-n', '1', exitApp, 'code', '9', '0']);
    expect(next.code, next.stderr).toBe(0);
    expect(existsSync(killedDir!)).toBe(false);
    expect(existsSync(liveDir!)).toBe(true);

    liveChild!.kill('SIGTERM');
    await live;
    expect(existsSync(liveDir!)).toBe(false);
  });
});
