/** Helpers for tests that start real jobs through the real launcher. */
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const mprunBin = join(root, 'bin', 'mprun.js');
export const app = (name: string): string => join(root, 'test', 'apps', name);

export interface JobResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  input?: string;
  env?: Record<string, string>;
  /** Called with the mprun child once it runs (to signal it, say). */
  onStart?: (child: ReturnType<typeof spawn>) => void;
  /** Called on each chunk of stdout. */
  onStdout?: (text: string, child: ReturnType<typeof spawn>) => void;
  killAfterMs?: number;
}

export function runMprun(args: string[], opts: RunOptions = {}): Promise<JobResult> {
  return new Promise((resolve) => {
    const start = Date.now();
    const child = spawn(process.execPath, [mprunBin, ...args], {
      cwd: root,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      opts.onStdout?.(stdout, child);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
    const guard = setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs ?? 50_000);
    opts.onStart?.(child);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - start });
    });
  });
}

/** Processes of ranks (any job) still alive. */
export function rankProcesses(): string[] {
  try {
    return execFileSync('pgrep', ['-af', 'rank-main\\.js|\\.rank\\.[mc]js'], { encoding: 'utf8' }).split('\n').filter((l) => l.trim() !== '');
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** Files of mprun (or anything else) in /dev/shm. */
export function shmFiles(): string[] {
  return readdirSync('/dev/shm').filter((f) => /mprun|xpmem|dsm|rpmem/i.test(f));
}

/** Waits until `cond` or `ms` pass; returns whether it held. */
export async function eventually(cond: () => boolean, ms = 3000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs `fn` with a new directory `dir` on a tmpfs of `size` (a disk that fills
 * up), unmounted after. Mounting needs root: without it the test is skipped,
 * saying why.
 */
export async function onSmallTmpfs(ctx: { skip(): void }, dir: string, size: string, fn: () => Promise<void>): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('full-disk test skipped: mounting a small tmpfs needs root');
    ctx.skip();
  }
  mkdirSync(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
  try {
    await fn();
  } finally {
    execFileSync('umount', [dir]);
  }
}
