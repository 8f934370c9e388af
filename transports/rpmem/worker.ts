/**
 * The checkpoint worker (a piscina task, one thread per rank): checksums and
 * writes an epoch copied aside by an asynchronous checkpoint, through its own
 * lanes to the rank's pools, while the application computes. The agreement
 * and commit stay with the rank (runtime/checkpoint.ts).
 */
import { RpmemLanes, type PoolDescriptor } from './lanes.js';
import { writeSlot, type ArrayLayout } from './store.js';

export interface SlotTask {
  pools: PoolDescriptor[];
  epoch: number;
  rank: number;
  nranks: number;
  layout: ArrayLayout[];
  staging: SharedArrayBuffer;
  total: number;
}

export type SlotTaskResult = { digest: number; error?: undefined } | { error: string; digest?: undefined };

/** Lanes stay connected between epochs, by pool. */
const attached = new Map<string, RpmemLanes>();

async function lanesOf(d: PoolDescriptor): Promise<RpmemLanes | Error> {
  const key = `${d.address}:${d.port}:${d.pool}`;
  let l = attached.get(key);
  if (l !== undefined && l.error === null) return l;
  l?.detach();
  attached.delete(key);
  try {
    l = await RpmemLanes.attach(d);
  } catch (e) {
    return e as Error;
  }
  attached.set(key, l);
  return l;
}

export default async function writeEpoch(task: SlotTask): Promise<SlotTaskResult[]> {
  const lanes = await Promise.all(task.pools.map(lanesOf));
  const usable = lanes.filter((l): l is RpmemLanes => !(l instanceof Error));
  const written = await writeSlot(usable, {
    epoch: task.epoch,
    rank: task.rank,
    nranks: task.nranks,
    layout: task.layout,
    views: [new Uint8Array(task.staging, 0, task.total)],
  });
  let k = 0;
  return lanes.map((l) => {
    const r = l instanceof Error ? l : written[k++]!;
    return r instanceof Error ? { error: r.message } : { digest: r.digest };
  });
}
