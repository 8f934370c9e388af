/**
 * Checkpoint targets of a job (`--job NAME --ckpt-target HOST[:DIR]`): one
 * rpmem daemon per target for the job's duration, started over ssh (or
 * $RPMEM_SSH) for a remote host and as a child of mprun for the local default,
 * and given the job's secret, which every rank's session and lane must prove.
 */
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { packageRoot } from '../native/index.js';
import { isMprunError } from '../runtime/errors.js';
import { daemonCommand, open, spawnDaemon, sshArgv, type DaemonEndpoint } from '../transports/rpmem/client.js';
import { jobSetName, ranksOf } from '../transports/rpmem/store.js';
import { shellWords } from '../transports/shell.js';
import { isLocalHost } from './hosts.js';
import { LineSink } from './stdio.js';

export interface CheckpointTarget {
  /** As the user wrote it (HOST[:DIR]), or "local:DIR" for the default. */
  label: string;
  /** null: this machine, daemon started directly. */
  host: string | null;
  /** The pool set directory on the target; relative paths are from the target user's home. */
  dir: string;
}

/** Where pools go when no directory is named: under the target user's home. */
export const DEFAULT_POOL_DIR = '.mprun/checkpoints';

export function parseCheckpointTarget(spec: string): CheckpointTarget {
  const k = spec.indexOf(':');
  const host = k < 0 ? spec : spec.slice(0, k);
  const dir = k < 0 || spec.slice(k + 1) === '' ? DEFAULT_POOL_DIR : spec.slice(k + 1);
  if (host === '' || /\s/.test(host)) throw new Error(`--ckpt-target takes HOST[:DIR], not '${spec}'`);
  return { label: spec, host: host === 'local' || isLocalHost(host) ? null : host, dir };
}

/** The embedded default: a pool directory under this user's home, served by a local daemon. */
export function defaultTarget(): CheckpointTarget {
  return { label: `local:${join(homedir(), DEFAULT_POOL_DIR)}`, host: null, dir: DEFAULT_POOL_DIR };
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
          const dir = isAbsolute(t.dir) ? t.dir : join(homedir(), t.dir);
          argv = [process.execPath, join(packageRoot, 'bin', 'mprun-rpmemd.js'), '--poolset-dir', dir, '--listen', listen];
        } else {
          const ssh = process.env.RPMEM_SSH !== undefined ? shellWords(process.env.RPMEM_SSH) : ['ssh', ...shellWords(process.env.MPRUN_SSH_ARGS ?? '')];
          argv = sshArgv(t.host, daemonCommand(t.dir), ssh);
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

/** The rank count a job's checkpoints were made with on any target (null: none yet). */
export async function checkpointedRanks(endpoints: DaemonEndpoint[], job: string): Promise<number | null> {
  for (const ep of endpoints) {
    try {
      const pool = await open(ep, jobSetName(job), { nlanes: 1 });
      const n = ranksOf(pool.attr);
      await pool.close();
      return n;
    } catch (e) {
      if (!isMprunError(e) || e.errno !== 'ENOENT') throw e;
    }
  }
  return null;
}
