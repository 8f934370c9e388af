/**
 * Counters of what this rank's collectives across nodes (MsgCollectives) sent:
 * collectives run, messages and payload bytes, and the part of those that
 * went to ranks on other nodes (over the network). Collectives of teams within
 * one node go through shared memory and are not counted. For benchmarks and
 * tests (messages per rank per collective grow as log2 of the node count).
 *
 * One object per process, kept on globalThis under Symbol.for('mprun.coll.stats'),
 * so that a benchmark reads the runtime's counters even through another copy
 * of this module (an app bundled with its own import of it):
 *
 *   const s = (globalThis as Record<symbol, CollStats | undefined>)[Symbol.for('mprun.coll.stats')];
 *
 * Bytes are the payload as the runtime hands it to the messenger: typed arrays
 * by their byte length, other values as an estimate of their msgpack size.
 * @internal
 */
export interface CollStats {
  collectives: number;
  messages: number;
  bytes: number;
  remoteMessages: number;
  remoteBytes: number;
}

const KEY = Symbol.for('mprun.coll.stats');

/** This process's counters (created on first use). @internal */
export function collStats(): CollStats {
  const g = globalThis as unknown as Record<symbol, CollStats | undefined>;
  return (g[KEY] ??= { collectives: 0, messages: 0, bytes: 0, remoteMessages: 0, remoteBytes: 0 });
}

/** Zeroes the counters (a benchmark calls it before the iterations it measures). @internal */
export function resetCollStats(): void {
  Object.assign(collStats(), { collectives: 0, messages: 0, bytes: 0, remoteMessages: 0, remoteBytes: 0 });
}

/** About the bytes `v` takes in a message: exact for typed arrays, an estimate of msgpack's size otherwise. */
export function payloadBytes(v: unknown): number {
  if (ArrayBuffer.isView(v)) return v.byteLength;
  if (Array.isArray(v)) {
    let s = 1;
    for (const x of v) s += payloadBytes(x);
    return s;
  }
  switch (typeof v) {
    case 'string':
      return v.length + 1;
    case 'number':
    case 'bigint':
      return 9;
    case 'object': {
      if (v === null) return 1;
      let s = 1;
      for (const [k, x] of Object.entries(v)) s += k.length + 1 + payloadBytes(x);
      return s;
    }
    default:
      return 1;
  }
}
