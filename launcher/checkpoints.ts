/**
 * `mprun checkpoints list|verify|remove --job NAME [--ckpt-target HOST[:DIR]]...`:
 * the epochs a job has committed on each target, their sizes and health;
 * verify reads every chunk back and checks its CRC32C; remove deletes the
 * job's pools (and their set files) from every target.
 *
 * Damage to a pool header (the target recovers it from its backup when it
 * opens the pool, or cannot open the pool at all) is reported, and list and
 * verify then exit 1; a job whose pools exist is never "no checkpoints".
 */
import { isMprunError } from '../core/errors.js';
import { list, open, remove, type DaemonEndpoint, type RpmemPool } from '../transports/rpmem/client.js';
import { commitKey, jobSetName, newestCommitFirst, rankSetName, readCommitRecords, readDescriptor, readSlot, VerifyError, type CommitRecord } from '../transports/rpmem/store.js';
import { checkJobName, defaultTarget, jobsOn, parseCheckpointTarget, startTargets, type CheckpointTarget } from './ckpt.js';
import { formatBytes, ProgressBar } from './progress.js';
import { randomHex } from '../core/random.js';

const USAGE = 'usage: mprun checkpoints list|verify|remove --job NAME [--ckpt-target HOST[:DIR]]... (list without --job: every job)';

interface EpochHealth {
  record: CommitRecord;
  /** Per target label: "ok" or what is wrong. */
  health: Map<string, string>;
}

const labelOf = (ep: DaemonEndpoint): string => ep.label ?? `${ep.address}:${ep.port}`;

/** Damage found on the targets, one line each ("LABEL: what"), in the order found. */
type Damage = Set<string>;

/** Reads a target's commit records (newest first); null when the job pool is not there. */
async function records(ep: DaemonEndpoint, job: string, damage: Damage): Promise<{ nranks: number; records: CommitRecord[]; notes: string[] } | null> {
  let pool: RpmemPool;
  try {
    pool = await open(ep, jobSetName(job), { nlanes: 1 });
  } catch (e) {
    if (isMprunError(e) && e.errno === 'ENOENT') return null;
    throw e;
  }
  for (const r of pool.repairs) damage.add(`${labelOf(ep)}: ${r}`);
  try {
    return await readCommitRecords(pool, pool.attr, 'commit record');
  } finally {
    await pool.close();
  }
}

/** Checks every rank's slot of `record` on a target: descriptors only, or (deep) every chunk too. */
async function checkEpoch(ep: DaemonEndpoint, job: string, record: CommitRecord, deep: boolean, bar: ProgressBar | null, done: { bytes: number }, damage: Damage): Promise<string> {
  const problems: string[] = [];
  for (let rank = 0; rank < record.nranks; rank++) {
    const what = `rank ${rank}`;
    let pool: RpmemPool;
    try {
      pool = await open(ep, rankSetName(job, rank, record.generations[rank]!), { nlanes: 2 });
    } catch (e) {
      const missing = isMprunError(e) && e.errno === 'ENOENT';
      problems.push(`${what}: ${missing ? 'pool missing' : (e as Error).message}`);
      if (!missing) damage.add(`${labelOf(ep)}: ${what}: ${(e as Error).message}`);
      continue;
    }
    for (const r of pool.repairs) damage.add(`${labelOf(ep)}: ${r}`);
    try {
      const info = await readDescriptor(pool, record.epoch % 2, what);
      if (info.epoch !== record.epoch || info.digest !== record.digests[rank]) {
        problems.push(`${what}: slot overwritten by epoch ${info.epoch}`);
        continue;
      }
      if (deep) {
        const base = done.bytes;
        await readSlot(pool, info, null, what, (n) => bar?.update(base + n));
        done.bytes += info.totalBytes;
      }
    } catch (e) {
      problems.push(e instanceof VerifyError ? e.message : `${what}: ${(e as Error).message}`);
    } finally {
      await pool.close();
    }
  }
  return problems.length === 0 ? (deep ? 'verified' : 'ok') : `DAMAGED: ${problems.join('; ')}`;
}

/** `list` without --job: each job found in the local targets' directories, one after another. */
async function listEveryJob(targetArgs: readonly string[], targets: CheckpointTarget[]): Promise<number> {
  const { jobs, notes } = jobsOn(targets);
  for (const n of notes) process.stderr.write(`mprun: ${n}\n`);
  if (jobs.length === 0) process.stdout.write(`no checkpoint jobs on ${targets.map((t) => t.label).join(', ')}\n`);
  let code = 0;
  for (const [i, j] of jobs.entries()) {
    if (i > 0) process.stdout.write('\n');
    code = Math.max(code, await checkpointsMain(['list', '--job', j, ...targetArgs]));
  }
  return code;
}

export async function checkpointsMain(argv: readonly string[]): Promise<number> {
  const action = argv[0];
  let job: string | null = null;
  const targets: CheckpointTarget[] = [];
  try {
    if (action !== 'list' && action !== 'verify' && action !== 'remove') throw new Error(USAGE);
    for (let i = 1; i < argv.length; i++) {
      const a = argv[i]!;
      const v = argv[i + 1];
      if ((a === '--job' || a === '--ckpt-target') && v === undefined) throw new Error(`${a} needs a value`);
      if (a === '--job') job = checkJobName(argv[++i]!);
      else if (a === '--ckpt-target') targets.push(parseCheckpointTarget(argv[++i]!));
      else throw new Error(`unknown argument ${a}; ${USAGE}`);
    }
    if (job === null && action !== 'list') throw new Error(`--job NAME is required; ${USAGE}`);
  } catch (e) {
    process.stderr.write(`mprun: ${(e as Error).message}\n`);
    return 2;
  }
  if (targets.length === 0) targets.push(defaultTarget());
  if (job === null) return listEveryJob(argv.slice(1), targets);
  const log = (m: string): void => void process.stderr.write(`mprun: ${m}\n`);
  let running;
  try {
    running = await startTargets(targets, randomHex(32), '127.0.0.1', log);
  } catch (e) {
    log((e as Error).message);
    return 1;
  }
  try {
    if (action === 'remove') {
      for (const ep of running.endpoints) {
        const sets = await list(ep, job!);
        for (const s of sets) await remove(ep, s, { force: true, poolSet: true });
        process.stdout.write(`${ep.label}: removed ${sets.length} pool(s) of job ${job}\n`);
      }
      return 0;
    }
    const epochs = new Map<string, EpochHealth>();
    const damage: Damage = new Set();
    /** Targets with rank pools but no job pool: a run that stopped before its first commit. */
    const uncommitted: string[] = [];
    let nranks = 0;
    for (const ep of running.endpoints) {
      const label = labelOf(ep);
      let r;
      try {
        r = await records(ep, job, damage);
      } catch (e) {
        damage.add(`${label}: the job pool ${jobSetName(job)} cannot be read, nor its commit records: ${(e as Error).message}`);
        continue;
      }
      if (r === null) {
        // The job pool's set file there but not its part: the commit records are lost, not "no checkpoints".
        // No set file: the job pool is made at the first commit; rank pools without it were never committed.
        const sets = await list(ep, job).catch((): string[] => []);
        if (sets.includes(jobSetName(job))) damage.add(`${label}: the job pool ${jobSetName(job)} has lost its part, and with it the commit records`);
        else if (sets.length > 0) uncommitted.push(label);
        continue;
      }
      nranks = r.nranks;
      for (const n of r.notes) log(`${ep.label}: ${n}`);
      for (const rec of r.records) {
        const have = epochs.get(commitKey(rec)) ?? { record: rec, health: new Map<string, string>() };
        epochs.set(commitKey(rec), have);
        const total = action === 'verify' ? rec.totalBytes : 0;
        const bar = action === 'verify' ? new ProgressBar(`verifying epoch ${rec.epoch} on ${label}`, total) : null;
        have.health.set(label, await checkEpoch(ep, job, rec, action === 'verify', bar, { bytes: 0 }, damage));
        bar?.end();
      }
    }
    const reportDamage = (): void => {
      for (const d of damage) process.stdout.write(`DAMAGED ${d}\n`);
    };
    if (epochs.size === 0) {
      if (damage.size > 0) {
        process.stdout.write(`job ${job}: its pools are damaged; no committed epoch can be read\n`);
        reportDamage();
        return 1;
      }
      const where = running.endpoints.map((e) => e.label).join(', ');
      if (uncommitted.length > 0) process.stdout.write(`job ${job}: no committed epoch on ${where} (pools on ${uncommitted.join(', ')} were written by a run that stopped before its first commit)\n`);
      else process.stdout.write(`job ${job}: no checkpoints on ${where}\n`);
      return action === 'verify' ? 1 : 0;
    }
    // Newest first, as a restart picks (diverged histories may hold epochs of the same number).
    const sorted = [...epochs.values()].sort((a, b) => newestCommitFirst(a.record, b.record));
    process.stdout.write(`job ${job}: ${nranks} ranks, ${sorted.length} committed epoch(s)\n`);
    process.stdout.write(`${'epoch'.padStart(7)}  ${'committed'.padEnd(19)}  ${'bytes'.padStart(10)}  replicas\n`);
    for (const e of sorted) {
      const when = new Date(e.record.time).toISOString().replace('T', ' ').slice(0, 19);
      const reps = [...e.health].map(([label, h]) => `${label} ${h}`).join(', ');
      process.stdout.write(`${String(e.record.epoch).padStart(7)}  ${when}  ${formatBytes(e.record.totalBytes).padStart(10)}  ${reps}\n`);
    }
    reportDamage();
    // Damage to a header fails both, even when it was recovered: someone should look at that disk.
    if (damage.size > 0) return 1;
    // verify: succeeds when the newest epoch is intact somewhere (what a restart would use).
    if (action === 'verify') return [...sorted[0]!.health.values()].some((h) => h === 'verified') ? 0 : 1;
    return 0;
  } finally {
    running.stop();
  }
}
