/**
 * A Slurm cluster on this machine, for tests: munged on a private key and
 * socket, slurmctld, and two slurmd daemons (`slurmd -N node1`, `-N node2`)
 * on this host, all in the foreground and all stopped by stop(). Clients
 * (salloc, srun, scontrol) find it through SLURM_CONF in `env`.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { hasTool } from '../../bench/cluster.js';
import { join } from 'node:path';

export interface SlurmCluster {
  nodes: string[];
  /** Environment for Slurm clients: SLURM_CONF. */
  env: Record<string, string>;
  dir: string;
  stop(): void;
}

export function slurmUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (slurmd runs jobs as any user)';
  for (const tool of ['/usr/sbin/slurmctld', '/usr/sbin/slurmd', '/usr/sbin/munged', 'salloc', 'srun', 'scontrol']) {
    if (!hasTool(tool)) return `needs ${tool} (Debian: slurm-wlm, munge)`;
  }
  return null;
}

export async function startSlurm(cpusPerNode = 2): Promise<SlurmCluster> {
  const why = slurmUnavailable();
  if (why !== null) throw new Error(`cannot start the Slurm cluster: ${why}`);
  const dir = mkdtempSync(join(tmpdir(), 'mprun-slurm-'));
  chmodSync(dir, 0o755);
  const daemons: ChildProcess[] = [];
  const stop = (): void => {
    // Let every job and step end first, so that no slurmstepd outlives its slurmd.
    const env = { ...process.env, SLURM_CONF: join(dir, 'slurm.conf') };
    spawnSync('scancel', ['--full', '--user=root'], { env, stdio: 'ignore' });
    const drained = Date.now() + 10_000;
    while (Date.now() < drained && (spawnSync('squeue', ['-h'], { env, encoding: 'utf8' }).stdout ?? '').trim() !== '') spawnSync('sleep', ['0.2']);
    // SIGTERM first: the daemons stop their own helpers (slurmscriptd, slurmstepd).
    for (const d of daemons) d.kill('SIGTERM');
    const end = Date.now() + 5000;
    while (daemons.some((d) => d.exitCode === null && d.signalCode === null && alive(d.pid!)) && Date.now() < end) spawnSync('sleep', ['0.1']);
    for (const d of daemons) if (alive(d.pid!)) d.kill('SIGKILL');
    // Any step daemon of ours still running holds files in our spool directories.
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try {
        if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('slurmstepd')) continue;
        if (readdirSync(`/proc/${pid}/fd`).some((fd) => readlinkSafe(`/proc/${pid}/fd/${fd}`).startsWith(dir))) process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const base = 20000 + ((process.pid * 7) % 20000);
    const ports = { ctld: base, node1: base + 1, node2: base + 2 };
    const key = join(dir, 'munge.key');
    writeFileSync(key, execFileSync('head', ['-c', '1024', '/dev/urandom']));
    chmodSync(key, 0o400);
    const sock = join(dir, 'munge.sock');
    mkdirSync(join(dir, 'state'));
    for (const node of ['node1', 'node2']) mkdirSync(join(dir, `tmp-${node}`));
    const conf = join(dir, 'slurm.conf');
    writeFileSync(
      conf,
      [
        'ClusterName=mprun-test',
        `SlurmctldHost=${hostname()}(127.0.0.1)`,
        `SlurmctldPort=${ports.ctld}`,
        'AuthType=auth/munge',
        `AuthInfo=socket=${sock}`,
        'CredType=cred/munge',
        'SlurmUser=root',
        'SlurmdUser=root',
        `StateSaveLocation=${join(dir, 'state')}`,
        `SlurmdSpoolDir=${join(dir, 'spool-%n')}`,
        // The pmix plugin (srun --mpi=pmix) makes each step's client directory under TmpFS: slurmd
        // daemons on one host that share it collide ("Cannot create directory /tmp/spmix_appdir_...").
        `TmpFS=${join(dir, 'tmp-%n')}`,
        `SlurmctldPidFile=${join(dir, 'slurmctld.pid')}`,
        `SlurmdPidFile=${join(dir, 'slurmd-%n.pid')}`,
        `SlurmctldLogFile=${join(dir, 'slurmctld.log')}`,
        `SlurmdLogFile=${join(dir, 'slurmd-%n.log')}`,
        'ProctrackType=proctrack/linuxproc',
        'TaskPlugin=task/none',
        'SelectType=select/cons_tres',
        'SelectTypeParameters=CR_CPU',
        'MpiDefault=none',
        'ReturnToService=2',
        'SchedulerType=sched/builtin',
        'JobCompType=jobcomp/none',
        'AccountingStorageType=accounting_storage/none',
        'SlurmdTimeout=30',
        'InactiveLimit=0',
        'KillWait=2',
        `NodeName=node1 NodeHostname=${hostname()} NodeAddr=127.0.0.1 Port=${ports.node1} CPUs=${cpusPerNode} State=UNKNOWN`,
        `NodeName=node2 NodeHostname=${hostname()} NodeAddr=127.0.0.1 Port=${ports.node2} CPUs=${cpusPerNode} State=UNKNOWN`,
        'PartitionName=test Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES',
        '',
      ].join('\n'),
    );
    const env = { ...process.env, SLURM_CONF: conf };
    const start = (cmd: string, args: string[]): ChildProcess => {
      const d = spawn(cmd, args, { env, stdio: 'ignore' });
      daemons.push(d);
      return d;
    };
    start('/usr/sbin/munged', ['-F', '--force', `--key-file=${key}`, `--socket=${sock}`, `--pid-file=${join(dir, 'munged.pid')}`, `--log-file=${join(dir, 'munged.log')}`, `--seed-file=${join(dir, 'munged.seed')}`]);
    await until(() => spawnSync('test', ['-S', sock]).status === 0, 5000, 'munged did not start');
    start('/usr/sbin/slurmctld', ['-D', '-i', '-f', conf]);
    start('/usr/sbin/slurmd', ['-D', '-N', 'node1', '-f', conf]);
    start('/usr/sbin/slurmd', ['-D', '-N', 'node2', '-f', conf]);
    await until(
      () => {
        const r = spawnSync('sinfo', ['-h', '-N', '-o', '%N %T'], { env, encoding: 'utf8' });
        return r.status === 0 && /node1 idle/.test(r.stdout) && /node2 idle/.test(r.stdout);
      },
      30_000,
      `the Slurm nodes did not come up (see ${dir}/*.log)`,
    );
    return { nodes: ['node1', 'node2'], env: { SLURM_CONF: conf }, dir, stop };
  } catch (e) {
    stop();
    throw e;
  }
}

function readlinkSafe(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^State:\s+Z/m.test(spawnSync('cat', [`/proc/${pid}/status`], { encoding: 'utf8' }).stdout ?? '');
  } catch {
    return false;
  }
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(what);
    await new Promise((r) => setTimeout(r, 200));
  }
}
