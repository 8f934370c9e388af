/**
 * The job controller of local mode: wire-up service, one process per rank,
 * stdio forwarding, and exit semantics:
 * - the job's exit code is that of the lowest rank that failed on its own;
 * - a rank that dies (signal, non-zero exit, or exit without finalize) aborts
 *   the job at once, with a message naming its rank, pid and cause;
 * - SIGINT/SIGTERM reach every rank, then SIGKILL after a grace period;
 * - on every path the job's private directory is removed, and ranks die with
 *   mprun (PR_SET_PDEATHSIG), so nothing is left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants as osConstants } from 'node:os';
import { native } from '../native/index.js';
import { readConfig } from '../runtime/config.js';
import { ControlSegment } from '../transports/xpmem/control.js';
import { compileApp, needsCompile } from './compile.js';
import { Controller } from './controller.js';
import { forwardLines } from './stdio.js';

export interface JobOptions {
  np: number;
  app: string;
  args: string[];
  /** Extra environment for every rank (-x). */
  env: Record<string, string>;
  tagOutput: boolean;
  timeoutSeconds: number | null;
  /** 'core': each rank to one core (the default when ranks <= cores); 'none': let the kernel place them. */
  bindTo: 'core' | 'none' | 'auto';
}

/** Exit code when --timeout expires (as timeout(1)). */
export const TIMEOUT_EXIT_CODE = 124;

interface RankProcess {
  rank: number;
  child: ChildProcess;
  pid: number;
  exited: boolean;
  connected: boolean;
  finalized: boolean;
  /** Exit code this rank is blamed for, when it failed on its own. */
  failure: number | null;
}

const here = dirname(fileURLToPath(import.meta.url));

function log(message: string): void {
  process.stderr.write(`mprun: ${message}\n`);
}

function signalNumber(sig: NodeJS.Signals): number {
  return (osConstants.signals as Record<string, number>)[sig] ?? 15;
}

export async function runJob(opts: JobOptions): Promise<number> {
  const jobId = `${process.pid}.${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'mprun-'));
  chmodSync(dir, 0o700);
  const cleanups: Array<() => void> = [() => rmSync(dir, { recursive: true, force: true })];
  const cleanup = (): void => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        c();
      } catch {
        // keep cleaning
      }
    }
  };
  try {
    let app = resolve(opts.app);
    if (needsCompile(app)) app = await compileApp(app, dir);
    return await launch(opts, jobId, dir, app, cleanups);
  } finally {
    cleanup();
  }
}

async function launch(opts: JobOptions, jobId: string, dir: string, app: string, cleanups: Array<() => void>): Promise<number> {
  const secret = randomBytes(32).toString('hex');
  const config = readConfig(opts.np);
  const { segment: ctrl, fd: ctrlFd } = ControlSegment.create(opts.np, config.queueBytes, config.teamSlots);
  cleanups.push(() => {
    ctrl.unmap();
    native().closeFd(ctrlFd);
  });

  const ranks: RankProcess[] = [];
  let aborting = false;
  let abortCode = 0;
  let killTimer: NodeJS.Timeout | null = null;
  let live = opts.np;
  let allExited!: () => void;
  const done = new Promise<void>((r) => (allExited = r));
  const grace = Number(process.env.MPRUN_KILL_GRACE_MS ?? 2000);

  const signalAll = (sig: NodeJS.Signals): void => {
    for (const r of ranks) {
      if (r.exited) continue;
      try {
        process.kill(-r.pid, sig); // the rank's process group: its children too
      } catch {
        try {
          process.kill(r.pid, sig);
        } catch {
          // already gone
        }
      }
    }
  };

  const abort = (reason: string, code: number, sig: NodeJS.Signals = 'SIGTERM'): void => {
    if (aborting) return;
    aborting = true;
    abortCode = code;
    log(reason);
    ctrl.abort(reason);
    signalAll(sig);
    killTimer = setTimeout(() => signalAll('SIGKILL'), grace);
  };

  const controller = new Controller(secret, opts.np, {
    abort: (rank, code, message) => abort(`rank ${rank} (pid ${ranks[rank]?.pid ?? '?'}) called abort: ${message || `exit code ${code}`}`, code),
    finalized: (rank) => {
      const r = ranks[rank];
      if (r !== undefined) r.finalized = true;
    },
    rejected: (why) => log(`closed a control connection: ${why}`),
    connected: (rank) => {
      const r = ranks[rank];
      if (r !== undefined) r.connected = true;
    },
  });
  const socketPath = join(dir, 'control.sock');
  await controller.listen(socketPath);
  cleanups.push(() => controller.close());

  const baseEnv: NodeJS.ProcessEnv = {
    ...process.env,
    ...opts.env,
    MPRUN_SIZE: String(opts.np),
    MPRUN_LOCAL_SIZE: String(opts.np),
    MPRUN_JOBID: jobId,
    MPRUN_CONTROLLER: socketPath,
    MPRUN_SECRET: secret,
    MPRUN_CTRL_FD: '3',
    MPRUN_PARENT_PID: String(process.pid),
  };
  // MPRUN_NODE_ARGS: extra Node.js flags for every rank (profiling: --cpu-prof, --trace-deopt).
  const extra = (process.env.MPRUN_NODE_ARGS ?? '').split(/\s+/).filter((a) => a !== '');
  const nodeArgs = ['--enable-source-maps', ...extra, join(here, 'rank-main.js'), app, ...opts.args];
  const outputs: Promise<void>[] = [];

  const cpuList = native().getAffinity();
  // As Open MPI: bind to cores unless that would put two ranks on one core.
  const bind = opts.bindTo === 'core' || (opts.bindTo === 'auto' && opts.np <= cpuList.length);
  for (let rank = 0; rank < opts.np; rank++) {
    const rankEnv: NodeJS.ProcessEnv = { ...baseEnv, MPRUN_RANK: String(rank), MPRUN_LOCAL_RANK: String(rank) };
    if (bind) rankEnv.MPRUN_BIND_CPU = String(cpuList[rank % cpuList.length]);
    const child = spawn(process.execPath, nodeArgs, {
      stdio: [rank === 0 ? 'pipe' : 'ignore', 'pipe', 'pipe', ctrlFd],
      env: rankEnv,
      detached: true, // its own process group, so that signals reach its children too
    });
    const r: RankProcess = { rank, child, pid: child.pid ?? -1, exited: false, connected: false, finalized: false, failure: null };
    ranks.push(r);
    const tag = opts.tagOutput ? `[${jobId},${rank}]` : '';
    outputs.push(forwardLines(child.stdout!, process.stdout, tag === '' ? '' : `${tag}<stdout>:`));
    outputs.push(forwardLines(child.stderr!, process.stderr, tag === '' ? '' : `${tag}<stderr>:`));
    child.on('error', (e) => {
      if (!r.exited) {
        r.exited = true;
        r.failure = 127;
        if (--live === 0) allExited();
        abort(`rank ${rank} could not start: ${e.message}`, 127);
      }
    });
    child.on('exit', (code, signal) => {
      if (r.exited) return;
      r.exited = true;
      const failed = signal !== null || code !== 0 || (r.connected && !r.finalized && live > 1);
      if (failed && !aborting) {
        r.failure = signal !== null ? 128 + signalNumber(signal) : code !== 0 ? code! : 1;
        const cause = signal !== null ? `was killed by ${signal}` : code !== 0 ? `exited with code ${code}` : 'exited without calling finalize';
        abort(`rank ${rank} (pid ${r.pid}) ${cause}; aborting the job`, r.failure);
      } else if (failed && signal === null && code !== 0 && code !== abortCode) {
        // failed on its own while the job was already aborting
        r.failure = code;
      }
      if (--live === 0) allExited();
    });
  }

  if (ranks[0]?.child.stdin) {
    const stdin = ranks[0].child.stdin;
    stdin.on('error', () => undefined);
    try {
      process.stdin.on('error', () => stdin.end());
      process.stdin.pipe(stdin);
    } catch {
      stdin.end();
    }
  }

  const onSignal = (sig: NodeJS.Signals): void => {
    if (aborting) {
      signalAll('SIGKILL');
      return;
    }
    abort(`received ${sig}; stopping ${live} rank(s)`, 128 + signalNumber(sig), sig);
  };
  const onInt = (): void => onSignal('SIGINT');
  const onTerm = (): void => onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  process.on('SIGHUP', onTerm);
  cleanups.push(() => {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    process.off('SIGHUP', onTerm);
  });
  // If mprun itself is about to exit for any reason, take the ranks along.
  const onExit = (): void => signalAll('SIGKILL');
  process.on('exit', onExit);
  cleanups.push(() => process.off('exit', onExit));

  let timeout: NodeJS.Timeout | null = null;
  if (opts.timeoutSeconds !== null) {
    timeout = setTimeout(() => abort(`the job exceeded --timeout ${opts.timeoutSeconds} s; stopping it`, TIMEOUT_EXIT_CODE), opts.timeoutSeconds * 1000);
  }

  await done;
  if (timeout !== null) clearTimeout(timeout);
  if (killTimer !== null) clearTimeout(killTimer);
  process.stdin.unpipe();
  process.stdin.pause();
  await Promise.all(outputs);

  const failed = ranks.find((r) => r.failure !== null);
  if (failed !== undefined) return failed.failure!;
  return aborting ? abortCode : 0;
}
