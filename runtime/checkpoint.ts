/**
 * Checkpoint/restart of a job (world.protect / restore / checkpoint), in the
 * manner of SCR and VeloC, over rpmem pools on one or more targets (replicas).
 *
 * Commit protocol for epoch e (transports/rpmem/store.ts has the layout):
 *   1. every rank writes its protected arrays into slot e % 2 of its pool on
 *      every live replica, a CRC32C per chunk, with the slot's descriptor, and
 *      persists them;
 *   2. the ranks agree (allreduce) on the replicas where every rank succeeded;
 *   3. rank 0 makes the job's commit record for e durable on those replicas:
 *      this is the commit point;
 *   4. only then does every rank flip its superblock to e.
 * A crash anywhere before 3 leaves e - 1 restorable (its slot was not written);
 * after 3, restore rolls the superblocks forward. Restore takes the newest
 * commit (by the time it was made: replicas that runs reached apart may hold
 * diverged histories, store.ts newestCommitFirst) whose every chunk verifies
 * on some replica, else the one before, reporting what failed; with none it
 * stops with a clear message.
 *
 * Asynchronous mode copies the arrays aside and returns; checksums and
 * transfer run in a piscina worker (its own lanes to the same pools), and the
 * agreement and commit of that epoch happen at the next checkpoint,
 * checkpointWait() or finalize.
 */
import { createRequire } from 'node:module';
import type { Piscina } from 'piscina';
import { createPool, errorText, fail, LANES, openAtLeast, openOrCreate, Replica, type CheckpointComm, type CheckpointConfig, type CheckpointInfo, type CheckpointOptions, type PendingAsync } from './checkpoint-replica.js';
import { isMprunError } from '../core/errors.js';
import { isTypedArray, type TypedArray } from '../core/types.js';
import { open, remove } from '../transports/rpmem/client.js';
import {
  encodeRecord,
  encodeSuperblock,
  jobPoolSize,
  jobSetName,
  layoutOf,
  poolSizeFor,
  rankSetName,
  readCommitRecords,
  commitKey,
  newestCommitFirst,
  readDescriptor,
  readSlot,
  recordAt,
  slotCapacity,
  storeAttr,
  superblockAt,
  totalOf,
  viewsOf,
  writeSlot,
  VerifyError,
  type ArrayLayout,
  type CommitRecord,
} from '../transports/rpmem/store.js';
import type { SlotTask, SlotTaskResult } from '../transports/rpmem/worker.js';

export { checkpointConfig, type CheckpointInfo, type CheckpointOptions } from './checkpoint-replica.js';

export class Checkpointer {
  readonly #comm: CheckpointComm;
  readonly #config: CheckpointConfig | null;
  readonly #arrays = new Map<string, TypedArray>();
  readonly #replicas: Replica[];
  /** The last committed (or restored) epoch; 0: none. */
  #epoch = 0;
  #restored = false;
  /**
   * Rank 0: the latest commit time it has read or written. Commits are stamped
   * after it (a Lamport clock over rank 0's wall clock): restore orders commits
   * by time, and a run whose rank 0's clock is behind the last run's must still
   * stamp its epochs as the newer ones.
   */
  #lastCommitTime = 0;
  /** This rank's pool generation, and the last epoch each generation holds. */
  #gen = 0;
  readonly #genEpochs = new Map<number, number>();
  #pending: PendingAsync | null = null;
  #piscina: Piscina | null = null;
  #staging: SharedArrayBuffer | null = null;
  /** Operations in progress (see #holding). */
  #busy = 0;

  constructor(comm: CheckpointComm, config: CheckpointConfig | null, secret: string) {
    this.#comm = comm;
    this.#config = config;
    this.#replicas = (config?.targets ?? []).map((t, i) => new Replica(i, t.label, { address: t.address, port: t.port, secret, label: t.label }));
  }

  restore(): Promise<number | null> {
    return this.#holding(() => this.#restore());
  }

  checkpoint(opts: CheckpointOptions = {}): Promise<CheckpointInfo> {
    return this.#holding(() => this.#checkpoint(opts));
  }

  checkpointWait(): Promise<CheckpointInfo | null> {
    return this.#holding(() => this.#checkpointWait());
  }

  /**
   * Runs one operation with the pools' connections keeping the process alive;
   * between operations they do not, so that a program that simply ends (no
   * finalize) reaches its beforeExit handler, which finalizes and so commits a
   * pending asynchronous epoch. A transfer in flight keeps the process alive
   * through its worker thread.
   */
  async #holding<T>(op: () => Promise<T>): Promise<T> {
    if (this.#busy++ === 0) this.#keepAlive(true);
    try {
      return await op();
    } finally {
      if (--this.#busy === 0) this.#keepAlive(false);
    }
  }

  #keepAlive(on: boolean): void {
    for (const r of this.#replicas) {
      r.pool?.keepAlive(on);
      r.job?.keepAlive(on);
    }
  }

  /** Registers (or replaces) a typed array under `name`; every rank protects the same names. */
  protect(name: string, array: TypedArray): void {
    if (typeof name !== 'string' || name === '' || name.length > 200) throw new TypeError('protect() needs a name: a non-empty string of at most 200 characters');
    if (!isTypedArray(array)) throw new TypeError(`protect('${name}', ...) needs a typed array`);
    this.#arrays.set(name, array);
  }

  #configured(what: string): CheckpointConfig {
    if (this.#config === null) throw fail(`${what} needs a checkpoint job: run with mprun --job NAME [--ckpt-target HOST[:DIR]]`);
    return this.#config;
  }

  #alive(): Replica[] {
    return this.#replicas.filter((r) => r.alive);
  }

  /**
   * Collective: restores the newest intact committed epoch into the protected
   * arrays and returns it, or null on a fresh start (or outside a checkpoint job).
   */
  async #restore(): Promise<number | null> {
    if (this.#config === null) return null;
    await this.#completeAsync();
    const job = this.#config.job;
    const comm = this.#comm;
    // Rank 0 reads the commit records of every replica and tells everyone.
    let candidates: Array<{ record: CommitRecord; replicas: number[] }> | { error: string } = [];
    if (comm.rank === 0) candidates = await this.#readRecords(job);
    candidates = await comm.bcast(candidates, 0);
    if (!Array.isArray(candidates)) throw fail(candidates.error);
    this.#restored = true;
    if (candidates.length === 0) return null;
    const reports: string[] = [];
    for (const cand of candidates) {
      const E = cand.record.epoch;
      const outcome = await this.#restoreEpoch(job, cand.record, cand.replicas);
      const worst = await comm.allreduce(new Int32Array([outcome.code]), 'min');
      const reasons = (await comm.allgather(outcome.reason)).filter((r): r is string => r !== null);
      if (worst[0] === 0) throw fail(`job ${job}: ${reasons.join('; ')}`);
      if (worst[0] === 2) {
        this.#epoch = E;
        this.#gen = cand.record.generations[comm.rank]!;
        this.#genEpochs.set(this.#gen, E);
        await this.#flipSuperblocks(E);
        if (comm.rank === 0 && reports.length > 0) process.stderr.write(`mprun: job ${job}: restored epoch ${E} instead\n`);
        return E;
      }
      const report = `epoch ${E} fails verification (${reasons.join('; ')})`;
      reports.push(report);
      if (comm.rank === 0) process.stderr.write(`mprun: job ${job}: checkpoint ${report}\n`);
    }
    throw fail(`job ${job} has no intact checkpoint: ${reports.join('; ')}`);
  }

  async #readRecords(job: string): Promise<Array<{ record: CommitRecord; replicas: number[] }> | { error: string }> {
    const commits = new Map<string, { record: CommitRecord; replicas: number[] }>();
    for (const r of this.#alive()) {
      try {
        r.job ??= await open(r.endpoint, jobSetName(job), { nlanes: LANES });
      } catch (e) {
        if (isMprunError(e) && e.errno === 'ENOENT') continue;
        r.drop(errorText(e), 0);
        continue;
      }
      let read;
      try {
        read = await readCommitRecords(r.job, r.job.attr, `${r.label}: commit record`);
      } catch (e) {
        r.drop(errorText(e), 0);
        continue;
      }
      const n = read.nranks;
      if (n !== this.#comm.size) {
        return { error: `job ${job} was checkpointed by ${n} ranks; this run has ${this.#comm.size}. Run it with -n ${n}, or start afresh after \`mprun checkpoints remove --job ${job}\`` };
      }
      for (const note of read.notes) process.stderr.write(`mprun: job ${job}: ${note}\n`);
      for (const rec of read.records) {
        this.#lastCommitTime = Math.max(this.#lastCommitTime, rec.time);
        const have = commits.get(commitKey(rec));
        if (have === undefined) commits.set(commitKey(rec), { record: rec, replicas: [r.index] });
        else have.replicas.push(r.index);
      }
    }
    return [...commits.values()].sort((a, b) => newestCommitFirst(a.record, b.record));
  }

  /** Reads and verifies this rank's slot of epoch E; code 2: ok, 1: failed verification, 0: unusable (layout). */
  async #restoreEpoch(job: string, record: CommitRecord, replicas: number[]): Promise<{ code: number; reason: string | null }> {
    const rank = this.#comm.rank;
    const gen = record.generations[rank]!;
    const failures: string[] = [];
    for (const idx of replicas) {
      const r = this.#replicas[idx]!;
      if (!r.alive) continue;
      const what = `rank ${rank} on ${r.label}`;
      try {
        if (r.pool === null || r.poolGen !== gen) {
          await r.pool?.close();
          r.pool = await open(r.endpoint, rankSetName(job, rank, gen), { nlanes: LANES });
          r.poolGen = gen;
        }
        const info = await readDescriptor(r.pool, record.epoch % 2, what);
        if (info.epoch !== record.epoch || info.digest !== record.digests[rank]) throw new VerifyError(`${what}: slot ${info.slot} holds epoch ${info.epoch}, not the committed ${record.epoch}`);
        const mismatch = this.#layoutMismatch(info.layout);
        if (mismatch !== null) return { code: 0, reason: `rank ${rank}: the protected arrays differ from epoch ${record.epoch}'s: ${mismatch}` };
        // Straight into the protected arrays: an epoch that fails is replaced by the one before
        // on every rank, or the job stops; the arrays never keep a mix.
        await readSlot(r.pool, info, viewsOf(this.#arrays.values()), what);
        return { code: 2, reason: null };
      } catch (e) {
        if (isMprunError(e) && e.errno === 'ENOENT') failures.push(`${what}: its pool is missing`);
        else if (e instanceof VerifyError) failures.push(e.message);
        else {
          failures.push(`${what}: ${errorText(e)}`);
          r.drop(errorText(e), rank);
        }
      }
    }
    if (failures.length === 0) failures.push(`rank ${rank}: no live target holds epoch ${record.epoch}`);
    return { code: 1, reason: failures.join(', ') };
  }

  #layoutMismatch(layout: ArrayLayout[]): string | null {
    const now = layoutOf(this.#arrays);
    if (now.length !== layout.length) return `${now.length} arrays protected now, ${layout.length} in the checkpoint`;
    for (let i = 0; i < now.length; i++) {
      const a = now[i]!;
      const b = layout[i]!;
      if (a.name !== b.name || a.type !== b.type || a.length !== b.length) return `'${a.name}' is ${a.type}(${a.length}) now, the checkpoint has '${b.name}' ${b.type}(${b.length})`;
    }
    return null;
  }

  async #flipSuperblocks(epoch: number): Promise<void> {
    const sb = encodeSuperblock({ epoch, slot: epoch % 2, generation: this.#gen });
    await Promise.all(
      this.#alive().map(async (r) => {
        if (r.pool === null || r.poolGen !== this.#gen) return;
        try {
          await r.pool.persistFrom(superblockAt(epoch % 2), sb);
        } catch (e) {
          // The commit record is the commit point; a later restore rolls the superblock forward.
          r.drop(`superblock flip: ${errorText(e)}`, this.#comm.rank);
        }
      }),
    );
  }

  /** Pools of the current generation on every live replica, big enough for `total` bytes per slot. */
  async #ensurePools(job: string, total: number): Promise<void> {
    const rank = this.#comm.rank;
    let gen = Math.max(this.#gen, 1);
    const live = this.#alive();
    // A state that outgrew the pools moves to a new generation; the old one keeps the last epoch.
    if (live.some((r) => r.pool !== null && r.poolGen === gen && slotCapacity(r.pool.size) < total)) gen++;
    const size = poolSizeFor(total);
    // The generation first, then the pools: a pool of a generation too small on some target is
    // never replaced (it may hold the committed epoch: a checkpoint before restore() adopts that
    // generation without opening it), and none is made before the generation is settled.
    const missing: Replica[] = [];
    for (;;) {
      let tooSmall = false;
      missing.length = 0;
      await Promise.all(
        live.map(async (r) => {
          if (!r.alive || (r.pool !== null && r.poolGen === gen)) return;
          try {
            const old = r.pool;
            r.pool = null;
            if (old !== null && old.error === null) await old.close();
            const pool = await openAtLeast(r.endpoint, rankSetName(job, rank, gen), size);
            if (pool === 'small') tooSmall = true;
            else if (pool === 'missing') missing.push(r);
            else {
              r.pool = pool;
              r.poolGen = gen;
            }
          } catch (e) {
            r.drop(`cannot open this rank's pool: ${errorText(e)}`, rank);
          }
        }),
      );
      if (!tooSmall) break;
      gen++;
    }
    await Promise.all(
      missing.map(async (r) => {
        try {
          r.pool = await createPool(r.endpoint, rankSetName(job, rank, gen), size, storeAttr('rank', this.#comm.size));
          r.poolGen = gen;
        } catch (e) {
          r.drop(`cannot make this rank's pool: ${errorText(e)}`, rank);
        }
      }),
    );
    this.#gen = gen;
  }

  /** Collective: makes the protected arrays durable on the targets as a new epoch. */
  async #checkpoint(opts: CheckpointOptions): Promise<CheckpointInfo> {
    const { job } = this.#configured('checkpoint()');
    const t0 = performance.now();
    await this.#completeAsync();
    if (!this.#restored) {
      // A checkpoint before restore() starts the epochs after whatever is committed.
      await this.#adoptCommitted(job);
    }
    const epoch = this.#epoch + 1;
    const layout = layoutOf(this.#arrays);
    const total = totalOf(layout);
    await this.#ensurePools(job, total);
    const replicas = this.#alive().filter((r) => r.pool !== null && r.poolGen === this.#gen);
    if (opts.async === true) return this.#startAsync(epoch, layout, total, replicas, t0);
    const results = await writeSlot(
      replicas.map((r) => r.pool!),
      { epoch, rank: this.#comm.rank, nranks: this.#comm.size, layout, views: viewsOf(this.#arrays.values()) },
    );
    const outcome = results.map((x, i) => (x instanceof Error ? { replica: replicas[i]!.index, error: x.message } : { replica: replicas[i]!.index, digest: x.digest }));
    const committed = await this.#commit(job, epoch, total, outcome);
    return { epoch, bytes: committed.bytes, seconds: (performance.now() - t0) / 1000, async: false, replicas: committed.replicas };
  }

  /** A checkpoint without restore(): continue the epochs of what is committed, keep its slot. */
  async #adoptCommitted(job: string): Promise<void> {
    let newest: { epoch: number; generations: number[] } | { error: string } | null = null;
    if (this.#comm.rank === 0) {
      const c = await this.#readRecords(job);
      newest = Array.isArray(c) ? (c[0] === undefined ? null : { epoch: c[0].record.epoch, generations: c[0].record.generations }) : c;
    }
    newest = await this.#comm.bcast(newest, 0);
    if (newest !== null && 'error' in newest) throw fail(newest.error);
    this.#restored = true;
    if (newest !== null) {
      this.#epoch = newest.epoch;
      this.#gen = newest.generations[this.#comm.rank]!;
      this.#genEpochs.set(this.#gen, newest.epoch);
    }
  }

  async #startAsync(epoch: number, layout: ArrayLayout[], total: number, replicas: Replica[], t0: number): Promise<CheckpointInfo> {
    if (this.#staging === null || this.#staging.byteLength !== total) this.#staging = new SharedArrayBuffer(Math.max(total, 1));
    const staging = new Uint8Array(this.#staging, 0, total);
    let at = 0;
    for (const v of viewsOf(this.#arrays.values())) {
      staging.set(v, at);
      at += v.byteLength;
    }
    // piscina is loaded with the first asynchronous checkpoint, not at every rank's start.
    if (this.#piscina === null) {
      // Its CommonJS build, required (not imported) here: rank bundles (launcher/compile.ts) hold no dynamic import.
      const { Piscina } = createRequire(import.meta.url)('piscina') as typeof import('piscina');
      this.#piscina = new Piscina({ filename: new URL('../transports/rpmem/worker.js', import.meta.url).href, minThreads: 1, maxThreads: 1, idleTimeout: 60_000 });
    }
    const task: SlotTask = {
      pools: replicas.map((r) => r.pool!.descriptor()),
      epoch,
      rank: this.#comm.rank,
      nranks: this.#comm.size,
      layout,
      staging: this.#staging,
      total,
    };
    const result = (this.#piscina.run(task) as Promise<SlotTaskResult[]>).catch((e: unknown) => replicas.map(() => ({ error: `checkpoint worker: ${errorText(e)}` })));
    this.#pending = { epoch, total, replicas, result };
    return { epoch, bytes: total, seconds: (performance.now() - t0) / 1000, async: true, replicas: replicas.map((r) => r.label) };
  }

  /** Collective: waits for an asynchronous checkpoint and commits it. */
  async #checkpointWait(): Promise<CheckpointInfo | null> {
    const p = this.#pending;
    if (p === null) return null;
    const t0 = performance.now();
    // As a synchronous checkpoint's: the job's bytes, the targets that took the commit record.
    const committed = (await this.#completeAsync())!;
    return { epoch: this.#epoch, bytes: committed.bytes, seconds: (performance.now() - t0) / 1000, async: true, replicas: committed.replicas };
  }

  /** Commits the pending asynchronous checkpoint, if any: what #commit answers, or null. */
  async #completeAsync(): Promise<{ bytes: number; replicas: string[] } | null> {
    const p = this.#pending;
    if (p === null) return null;
    this.#pending = null;
    const results = await p.result;
    const outcome = results.map((x, i) => ({ replica: p.replicas[i]!.index, ...x }));
    return this.#commit(this.#config!.job, p.epoch, p.total, outcome);
  }

  /** Steps 2-4 of the protocol: agree, commit record, superblock flip. */
  async #commit(job: string, epoch: number, total: number, outcome: Array<{ replica: number; digest?: number; error?: string }>): Promise<{ bytes: number; replicas: string[] }> {
    const comm = this.#comm;
    const rank = comm.rank;
    let mask = 0;
    for (const o of outcome) {
      if (o.error === undefined) mask |= 1 << o.replica;
      else this.#replicas[o.replica]!.drop(`epoch ${epoch}: ${o.error}`, rank);
    }
    const digest = outcome.find((o) => o.digest !== undefined)?.digest ?? 0;
    const agreed = (await comm.allreduce(new Uint32Array([mask]), 'band'))[0]!;
    const all = await comm.allgather({ digest, gen: this.#gen, total, errors: outcome.filter((o) => o.error !== undefined).map((o) => `${this.#replicas[o.replica]!.label}: ${o.error}`) });
    if (agreed === 0) {
      const why = all.flatMap((a, r) => a.errors.map((e) => `rank ${r}: ${e}`));
      throw fail(`checkpoint epoch ${epoch} of job ${job} failed on every target (${why.join('; ') || 'no target is reachable'}); epoch ${this.#epoch} stays the last one`);
    }
    // A target some rank could not write is dropped by every rank: one that went on writing it
    // would overwrite the slots its last commit record names, and it would hold no intact epoch.
    this.#dropAllBut(agreed, `epoch ${epoch}: another rank could not write it`);
    const jobBytes = all.reduce((s, a) => s + a.total, 0);
    let written = 0;
    if (rank === 0) {
      this.#lastCommitTime = Math.max(Date.now(), this.#lastCommitTime + 1);
      const record = encodeRecord({ epoch, nranks: comm.size, totalBytes: jobBytes, time: this.#lastCommitTime, digests: all.map((a) => a.digest), generations: all.map((a) => a.gen) });
      await Promise.all(
        this.#replicas.map(async (r) => {
          if (!(agreed & (1 << r.index)) || !r.alive) return;
          try {
            r.job ??= await openOrCreate(r.endpoint, jobSetName(job), jobPoolSize(comm.size), storeAttr('job', comm.size));
            await r.job.persistFrom(recordAt(epoch % 2, comm.size), record);
            written |= 1 << r.index;
          } catch (e) {
            r.drop(`commit record of epoch ${epoch}: ${errorText(e)}`, rank);
          }
        }),
      );
    }
    written = await comm.bcast(written, 0);
    this.#dropAllBut(written, `epoch ${epoch}: its commit record could not be written`);
    if (written === 0) throw fail(`checkpoint epoch ${epoch} of job ${job}: no target took the commit record; epoch ${this.#epoch} stays the last one`);
    this.#epoch = epoch;
    this.#genEpochs.set(this.#gen, epoch);
    await this.#flipSuperblocks(epoch);
    await this.#retireGenerations(job);
    return { bytes: jobBytes, replicas: this.#replicas.filter((r) => written & (1 << r.index)).map((r) => r.label) };
  }

  /** Drops every live target whose bit is clear in `mask`. */
  #dropAllBut(mask: number, why: string): void {
    for (const r of this.#alive()) if (!(mask & (1 << r.index))) r.drop(why, this.#comm.rank);
  }

  /** Removes pools of generations that no restorable epoch (the last two) needs. */
  async #retireGenerations(job: string): Promise<void> {
    for (const [gen, last] of [...this.#genEpochs]) {
      if (gen === this.#gen || last >= this.#epoch - 1) continue;
      this.#genEpochs.delete(gen);
      for (const r of this.#alive()) {
        await remove(r.endpoint, rankSetName(job, this.#comm.rank, gen), { force: true, poolSet: true }).catch(() => undefined);
      }
    }
  }

  /** Finalize: commits a pending asynchronous checkpoint and closes the pools. */
  close(): Promise<void> {
    return this.#holding(() => this.#close());
  }

  async #close(): Promise<void> {
    await this.#completeAsync();
    await this.#piscina?.destroy();
    this.#piscina = null;
    for (const r of this.#replicas) {
      await r.pool?.close().catch(() => undefined);
      await r.job?.close().catch(() => undefined);
      r.pool = null;
      r.job = null;
    }
  }
}

