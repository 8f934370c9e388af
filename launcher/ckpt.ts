/**
 * Checkpoint targets of a job (`--job NAME --ckpt-target HOST[:DIR]`): one
 * rpmem daemon per target for the job's duration, started over ssh (or
 * $RPMEM_SSH) for a remote host and as a child of mprun for the local default,
 * and given the job's secret, which every rank's session and lane must prove.
 */
import { closeSync, existsSync, fstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { native, packageRoot } from '../native/index.js';
import { isMprunError } from '../core/errors.js';
import { daemonCommand, open, spawnDaemon, sshArgv, type DaemonEndpoint } from '../transports/rpmem/client.js';
import { jobSetName, newestCommitFirst, ranksOf, readCommitRecords, type CommitRecord } from '../transports/rpmem/store.js';
import { shellQuote, shellWords } from '../core/shell.js';
import { isLocalHost } from './hosts.js';
import { formatBytes } from './progress.js';
import { LineSink } from './stdio.js';

export interface CheckpointTarget {
  /** As the user wrote it (HOST[:DIR]), or "local:DIR" for the default. */
  label: string;
  /** null: this machine, daemon started directly. */
  host: string | null;
  /** The pool set directory on the target; relative paths are from the target user's home. */
  dir: string;
  /** Make the directory and its parents when missing (the default directory, or --ckpt-mkdir); else it must exist. */
  mkdir?: boolean;
}

/** Where pools go when no directory is named: under the target user's home. */
export const DEFAULT_POOL_DIR = '.mprun/checkpoints';

export function parseCheckpointTarget(spec: string): CheckpointTarget {
  const k = spec.indexOf(':');
  const host = k < 0 ? spec : spec.slice(0, k);
  const dir = k < 0 || spec.slice(k + 1) === '' ? DEFAULT_POOL_DIR : spec.slice(k + 1);
  if (host === '' || /\s/.test(host)) throw new Error(`--ckpt-target takes HOST[:DIR], not '${spec}'`);
  return { label: spec, host: host === 'local' || isLocalHost(host) ? null : host, dir, ...(dir === DEFAULT_POOL_DIR ? { mkdir: true } : {}) };
}

/** The embedded default: a pool directory under this user's home, served by a local daemon. */
export function defaultTarget(): CheckpointTarget {
  return { label: `local:${join(homedir(), DEFAULT_POOL_DIR)}`, host: null, dir: DEFAULT_POOL_DIR, mkdir: true };
}

export function checkJobName(job: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(job)) throw new Error(`--job takes a name of letters, digits, '.', '_' and '-' (got '${job}')`);
  return job;
}

export interface RunningTargets {
  endpoints: DaemonEndpoint[];
  stop(): void;
}

/**
 * Starts a daemon per target. `listen`: the address a local daemon's lanes
 * listen on (127.0.0.1 for a one-node job, the controller's address otherwise).
 */
export async function startTargets(targets: CheckpointTarget[], secret: string, listen: string, log: (m: string) => void): Promise<RunningTargets> {
  const running: Array<{ end(): void; child: { kill(sig: NodeJS.Signals): boolean } }> = [];
  let stopping = false;
  const stop = (): void => {
    stopping = true;
    for (const r of running) {
      r.end();
      r.child.kill('SIGTERM');
    }
  };
  try {
    const started = await Promise.allSettled(
      targets.map(async (t) => {
        const sink = new LineSink(process.stderr, `mprun: checkpoint target ${t.label}: `);
        const onStderr = (d: Buffer): void => sink.push(d);
        let argv: string[];
        if (t.host === null) {
          const dir = localDir(t);
          argv = [process.execPath, join(packageRoot, 'bin', 'mprun-rpmemd.js'), '--poolset-dir', dir, '--listen', listen];
        } else {
          const ssh = process.env.RPMEM_SSH !== undefined ? shellWords(process.env.RPMEM_SSH) : ['ssh', ...shellWords(process.env.MPRUN_SSH_ARGS ?? '')];
          argv = sshArgv(t.host, remoteCommand(t), ssh);
        }
        const d = await spawnDaemon(t.host ?? 'localhost', { argv, secret, onStderr });
        running.push(d);
        d.child.on('exit', (code, signal) => {
          sink.end();
          if (!stopping) log(`checkpoint target ${t.label}: its daemon ended (${signal ?? `exit code ${code}`})`);
        });
        return { address: d.address, port: d.port, secret, label: t.label };
      }),
    );
    // A target that cannot be reached is a lost replica: the job goes on with the others.
    const endpoints: DaemonEndpoint[] = [];
    started.forEach((r, i) => {
      if (r.status === 'fulfilled') endpoints.push(r.value);
      else log(`checkpoint target ${targets[i]!.label} is unavailable (${(r.reason as Error).message}); going on with the others`);
    });
    if (endpoints.length === 0) throw new Error('no checkpoint target could be started');
    return { endpoints, stop };
  } catch (e) {
    stop();
    throw e;
  }
}

/**
 * What a job has committed on its targets: the rank count its checkpoints were
 * made with and the newest commit record that verifies on any target (null:
 * a fresh job). Unreadable records are left to world.restore() to report.
 */
export async function committedState(endpoints: DaemonEndpoint[], job: string): Promise<{ nranks: number; newest: CommitRecord | null } | null> {
  let state: { nranks: number; newest: CommitRecord | null } | null = null;
  for (const ep of endpoints) {
    let pool;
    try {
      pool = await open(ep, jobSetName(job), { nlanes: 1 });
    } catch (e) {
      if (!isMprunError(e) || e.errno !== 'ENOENT') throw e;
      continue;
    }
    try {
      state ??= { nranks: ranksOf(pool.attr), newest: null };
      const newest = (await readCommitRecords(pool, pool.attr, 'commit record').catch(() => null))?.records[0] ?? null;
      if (newest !== null && (state.newest === null || newestCommitFirst(newest, state.newest) < 0)) state.newest = newest;
    } finally {
      await pool.close();
    }
  }
  return state;
}

/** The line a rerun prints: which epoch it resumes from, when it was committed and its size. */
export function resumeLine(job: string, r: CommitRecord): string {
  const when = new Date(r.time).toISOString().replace('T', ' ').slice(0, 19);
  return `resuming job ${job} from epoch ${r.epoch} (committed ${when} UTC, ${formatBytes(r.totalBytes)})`;
}

/**
 * The jobs that have pools in the local targets' directories (a directory
 * holding pool set files), sorted; `notes`: targets that cannot be listed
 * from here (remote ones: give --job NAME for them).
 */
export function jobsOn(targets: CheckpointTarget[]): { jobs: string[]; notes: string[] } {
  const jobs = new Set<string>();
  const notes: string[] = [];
  for (const t of targets) {
    if (t.host !== null) {
      notes.push(`${t.label}: the jobs of a remote target are not listed; give --job NAME`);
      continue;
    }
    const dir = localDir(t);
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      continue; // no directory: no jobs
    }
    for (const n of names) {
      try {
        if (/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(n) && readdirSync(join(dir, n)).some((f) => f.endsWith('.set'))) jobs.add(n);
      } catch {
        // not a directory
      }
    }
  }
  return { jobs: [...jobs].sort(), notes };
}

/** A local target's directory (relative ones are under this user's home). */
function localDir(t: CheckpointTarget): string {
  return isAbsolute(t.dir) ? t.dir : join(homedir(), t.dir);
}

function missingDir(dir: string, where: string): string {
  return `checkpoint directory ${dir} does not exist${where}; create it, or add --ckpt-mkdir (mprun makes only its default directory by itself)`;
}

/** The daemon's command on a remote target; the directory must exist there unless it may be made. */
function remoteCommand(t: CheckpointTarget): string {
  const cmd = daemonCommand(t.dir);
  if (t.mkdir === true) return cmd;
  const d = shellQuote(t.dir);
  const script = `if [ ! -d ${d} ]; then echo ${shellQuote(missingDir(t.dir, ` on ${t.host}`))} >&2; exit 1; fi; exec ${cmd}`;
  return `sh -c ${shellQuote(script)}`;
}

/**
 * Takes the job's name before anything starts: an exclusive flock on
 * `JOB.lock` in each local target's directory (in the default directory when
 * every target is remote), held until `release()` (which removes the file) or
 * until this process dies (a killed mprun leaves an unlocked file, no stale
 * lock). A name in use is refused at once, naming the mprun that holds it.
 * Also makes (or refuses) missing local directories. Returns the release
 * function.
 */
export function claimJob(job: string, targets: CheckpointTarget[]): () => void {
  const local = targets.filter((t) => t.host === null);
  for (const t of local) {
    const dir = localDir(t);
    if (existsSync(dir)) continue;
    // A named directory that is not there is likely a typo: made only when asked (--ckpt-mkdir).
    if (t.mkdir !== true) throw new Error(missingDir(dir, ''));
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }
  const dirs = local.length > 0 ? [...new Set(local.map(localDir))] : [localDir(defaultTarget())];
  const held: Array<{ fd: number; path: string }> = [];
  // The file goes with the lock (unlinked while still held), so a finished job leaves nothing.
  const release = (): void => {
    for (const { fd, path } of held.splice(0)) {
      rmSync(path, { force: true });
      closeSync(fd);
    }
  };
  try {
    for (const dir of dirs) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const path = join(dir, `${job}.lock`);
      for (;;) {
        writeFileSync(path, '', { flag: 'a', mode: 0o600 });
        let fd: number;
        try {
          fd = native().lockPool(path);
        } catch (e) {
          if (!(isMprunError(e) && e.errno === 'EAGAIN')) throw e;
          const pid = /^\d+/.exec(readFileSync(path, 'utf8'))?.[0];
          throw new Error(`job ${job} is in use by mprun ${pid !== undefined ? `pid ${pid}` : 'another process'} (${path}); wait for it, or choose another --job name`);
        }
        // Locked a file its holder had just unlinked: take the new one instead.
        if (fstatSync(fd).ino === statSync(path, { throwIfNoEntry: false })?.ino) {
          held.push({ fd, path });
          break;
        }
        closeSync(fd);
      }
      writeFileSync(path, `${process.pid}\n`);
    }
  } catch (e) {
    release();
    throw e;
  }
  return release;
}
