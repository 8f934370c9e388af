/**
 * What checkpoint/restart (checkpoint.ts) works with: its options and
 * results, the job's configuration from mprun, the collectives it needs, and
 * each target (replica) as this rank uses it: its pools, and its loss.
 */
import type { SlotTaskResult } from '../transports/rpmem/worker.js';
import { MprunError, isMprunError } from '../core/errors.js';
import type { TypedArray } from '../core/types.js';
import { create, open, remove, type DaemonEndpoint, type RpmemPool } from '../transports/rpmem/client.js';
import type { PoolAttr } from '../transports/rpmem/header.js';

export interface CheckpointInfo {
  epoch: number;
  /** Bytes of protected state of the whole job (async: this rank's, until committed). */
  bytes: number;
  /** Seconds this call took: for async, the application's stall (the copy aside). */
  seconds: number;
  async: boolean;
  /** The targets that hold this epoch (async: those it is being written to). */
  replicas: string[];
}

export interface CheckpointOptions {
  async?: boolean;
}

/** What mprun passes in MPRUN_CKPT: the job's name and its target daemons. */
export interface CheckpointConfig {
  job: string;
  targets: Array<{ label: string; address: string; port: number }>;
}

/** The collectives the protocol needs (the World's). */
export interface CheckpointComm {
  readonly rank: number;
  readonly size: number;
  allreduce<T extends TypedArray>(buf: T, op: 'sum' | 'min' | 'max' | 'band'): Promise<T>;
  bcast<T>(data: T, root?: number): Promise<T>;
  allgather<T>(value: T): Promise<T[]>;
}

/** Lanes per pool: the TCP streams (and daemon threads) a rank's transfers spread over; 4 measured no faster here. */
export const LANES = 2;

export function fail(message: string): MprunError {
  return new MprunError('ERR_MPRUN_CHECKPOINT', message);
}

export function checkpointConfig(): CheckpointConfig | null {
  const raw = process.env.MPRUN_CKPT;
  if (raw === undefined || raw === '') return null;
  return JSON.parse(raw) as CheckpointConfig;
}

/** One target, as this rank uses it. */
export class Replica {
  alive = true;
  pool: RpmemPool | null = null;
  poolGen = 0;
  job: RpmemPool | null = null;
  constructor(
    readonly index: number,
    readonly label: string,
    readonly endpoint: DaemonEndpoint,
  ) {}

  drop(why: string, rank: number): void {
    if (!this.alive) return;
    this.alive = false;
    process.stderr.write(`mprun: rank ${rank}: checkpoint target ${this.label} dropped: ${why}\n`);
    this.pool?.close().catch(() => undefined);
    this.job?.close().catch(() => undefined);
    this.pool = null;
    this.job = null;
  }
}

export interface PendingAsync {
  epoch: number;
  total: number;
  replicas: Replica[];
  result: Promise<SlotTaskResult[]>;
}

export const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Opens a pool of at least `size` bytes: the pool, or whether it is 'missing' or too 'small' (closed again). */
export async function openAtLeast(ep: DaemonEndpoint, set: string, size: number): Promise<RpmemPool | 'missing' | 'small'> {
  try {
    const p = await open(ep, set, { nlanes: LANES });
    if (p.size >= size) return p;
    await p.close();
    return 'small';
  } catch (e) {
    if (!isMprunError(e) || e.errno !== 'ENOENT') throw e;
    return 'missing';
  }
}

export function createPool(ep: DaemonEndpoint, set: string, size: number, attr: PoolAttr): Promise<RpmemPool> {
  return create(ep, set, size, { nlanes: LANES, attr, makeSet: true });
}

/** Opens a pool, or creates it when it does not exist; one too small is replaced (the job pool's records). */
export async function openOrCreate(ep: DaemonEndpoint, set: string, size: number, attr: PoolAttr): Promise<RpmemPool> {
  const p = await openAtLeast(ep, set, size);
  if (p === 'small') await remove(ep, set, { force: true, poolSet: true });
  return typeof p === 'string' ? createPool(ep, set, size, attr) : p;
}
