/**
 * `mprun checkpoints list|verify|remove --job NAME [--ckpt-target HOST[:DIR]]...`:
 * the epochs a job has committed on each target, their sizes and health;
 * verify reads every chunk back and checks its CRC32C; remove deletes the
 * job's pools (and their set files) from every target.
 */
import { randomBytes } from 'node:crypto';
import { isMprunError } from '../runtime/errors.js';
import { list, open, remove, type DaemonEndpoint, type RpmemPool } from '../transports/rpmem/client.js';
import { jobSetName, rankSetName, readCommitRecords, readDescriptor, readSlot, VerifyError, type CommitRecord } from '../transports/rpmem/store.js';
import { checkJobName, defaultTarget, parseCheckpointTarget, startTargets, type CheckpointTarget } from './ckpt.js';
import { formatBytes, ProgressBar } from './progress.js';

const USAGE = 'usage: mprun checkpoints list|verify|remove --job NAME [--ckpt-target HOST[:DIR]]...';

interface EpochHealth {
  record: CommitRecord;
  /** Per target label: "ok" or what is wrong. */
  health: Map<string, string>;
}

/** Reads a target's commit records (newest first); null when the job has no pools there. */
async function records(ep: DaemonEndpoint, job: string): Promise<{ nranks: number; records: CommitRecord[]; notes: string[] } | null> {
  let pool: RpmemPool;
  try {
    pool = await open(ep, jobSetName(job), { nlanes: 1 });
  } catch (e) {
    if (isMprunError(e) && e.errno === 'ENOENT') return null;
    throw e;
  }
  try {
    return await readCommitRecords(pool, pool.attr, 'commit record');
  } finally {
    await pool.close();
  }
}

/** Checks every rank's slot of `record` on a target: descriptors only, or (deep) every chunk too. */
async function checkEpoch(ep: DaemonEndpoint, job: string, record: CommitRecord, deep: boolean, bar: ProgressBar | null, done: { bytes: number }): Promise<string> {
  const problems: string[] = [];
  for (let rank = 0; rank < record.nranks; rank++) {
    const what = `rank ${rank}`;
    let pool: RpmemPool;
    try {
      pool = await open(ep, rankSetName(job, rank, record.generations[rank]!), { nlanes: 2 });
    } catch (e) {
      problems.push(`${what}: ${isMprunError(e) && e.errno === 'ENOENT' ? 'pool missing' : (e as Error).message}`);
      continue;
    }
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
    if (job === null) throw new Error(`--job NAME is required; ${USAGE}`);
  } catch (e) {
    process.stderr.write(`mprun: ${(e as Error).message}\n`);
    return 2;
  }
  if (targets.length === 0) targets.push(defaultTarget());
  const log = (m: string): void => void process.stderr.write(`mprun: ${m}\n`);
  let running;
  try {
    running = await startTargets(targets, randomBytes(32).toString('hex'), '127.0.0.1', log);
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
    const epochs = new Map<number, EpochHealth>();
    let nranks = 0;
    for (const ep of running.endpoints) {
      const label = ep.label ?? `${ep.address}:${ep.port}`;
      const r = await records(ep, job).catch((e: Error) => {
        log(`${ep.label}: ${e.message}`);
        return null;
      });
      if (r === null) continue;
      nranks = r.nranks;
      for (const n of r.notes) log(`${ep.label}: ${n}`);
      for (const rec of r.records) {
        const have = epochs.get(rec.epoch) ?? { record: rec, health: new Map<string, string>() };
        epochs.set(rec.epoch, have);
        const total = action === 'verify' ? rec.totalBytes : 0;
        const bar = action === 'verify' ? new ProgressBar(`verifying epoch ${rec.epoch} on ${label}`, total) : null;
        have.health.set(label, await checkEpoch(ep, job, rec, action === 'verify', bar, { bytes: 0 }));
        bar?.end();
      }
    }
    if (epochs.size === 0) {
      process.stdout.write(`job ${job}: no checkpoints on ${running.endpoints.map((e) => e.label).join(', ')}\n`);
      return action === 'verify' ? 1 : 0;
    }
    const sorted = [...epochs.values()].sort((a, b) => b.record.epoch - a.record.epoch);
    process.stdout.write(`job ${job}: ${nranks} ranks, ${sorted.length} committed epoch(s)\n`);
    process.stdout.write(`${'epoch'.padStart(7)}  ${'committed'.padEnd(19)}  ${'bytes'.padStart(10)}  replicas\n`);
    for (const e of sorted) {
      const when = new Date(e.record.time).toISOString().replace('T', ' ').slice(0, 19);
      const reps = [...e.health].map(([label, h]) => `${label} ${h}`).join(', ');
      process.stdout.write(`${String(e.record.epoch).padStart(7)}  ${when}  ${formatBytes(e.record.totalBytes).padStart(10)}  ${reps}\n`);
    }
    // verify: succeeds when the newest epoch is intact somewhere (what a restart would use).
    if (action === 'verify') return [...sorted[0]!.health.values()].some((h) => h === 'verified') ? 0 : 1;
    return 0;
  } finally {
    running.stop();
  }
}
