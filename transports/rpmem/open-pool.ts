/**
 * A pool open in the rpmem daemon: its parts mapped (libpmem's pmem_map_file,
 * else mmap), the state it shares with its lane threads, and those lanes, each
 * served on a thread of its own (native/lane.cc). The parts stay mapped, and
 * their descriptors open, until the pool is closed and its last lane ended.
 */
import { native } from '../../native/index.js';
import type { PoolAttr } from './header.js';
import { extentsOf, POOL_HDR_SIZE, type Extent, type PoolSet } from './poolset.js';
import { errnoName, errnoNumber, type PersistMethod } from './protocol.js';

export interface MappedPart {
  buffer: ArrayBuffer;
  bytes: Uint8Array;
  isPmem: boolean;
  via: 'libpmem' | 'mmap';
  fd: number;
}

/** Maps a part (create: a new file, its space allocated now). */
export function mapPart(path: string, size: number, create: boolean): MappedPart {
  const m = native().poolMap(path, size, create);
  return { buffer: m.buffer, bytes: new Uint8Array(m.buffer), isPmem: m.isPmem, via: m.via, fd: m.fd };
}

export function unmapAll(parts: MappedPart[]): void {
  for (const p of parts) native().release(p.buffer);
}

/**
 * The words of a pool's state, an Int32Array over a SharedArrayBuffer that its
 * lane threads read and write with atomics (native/lane.cc names the same
 * indices: keep the two in step).
 */
export const PoolState = {
  /** The errno that poisoned the pool (its first failed write or persist; 0: none): every later request reports it. */
  POISON: 0,
  /** Nonzero once the pool is closed: lane threads stop. */
  CLOSED: 1,
  /** Persists so far, counted by the lane threads. */
  PERSIST_COUNT: 2,
  /** The persist that fails with EIO (0: none): the MPRUN_RPMEMD_FAIL_PERSIST test hook. */
  FAIL_AT: 3,
} as const;

/**
 * Test hook: MPRUN_RPMEMD_FAIL_PERSIST=N makes the N-th persist of each pool
 * fail with EIO; N:TEXT, of each pool whose pool set path contains TEXT (one
 * rank's pool on one target).
 */
function failPersistAt(setPath: string): number {
  const hook = process.env.MPRUN_RPMEMD_FAIL_PERSIST ?? '';
  const colon = hook.indexOf(':');
  if (colon >= 0 && !setPath.includes(hook.slice(colon + 1))) return 0;
  return Number(colon >= 0 ? hook.slice(0, colon) : hook) || 0;
}

/** A pool open in this daemon. */
export class OpenPool {
  /** Shared with the lane threads: the words of PoolState. */
  readonly state = new Int32Array(new SharedArrayBuffer(16));
  /** Lane threads running, by their socket's descriptor: the parts stay mapped (and their fds open) until they end. */
  readonly #lanes = new Set<number>();
  readonly extents: Extent[];
  constructor(
    readonly id: number,
    readonly setPath: string,
    readonly set: PoolSet,
    readonly parts: MappedPart[],
    readonly size: number,
    public attr: PoolAttr | null,
    readonly lockFd: number,
    readonly nlanes: number,
  ) {
    this.extents = extentsOf(set);
    this.state[PoolState.FAIL_AT] = failPersistAt(setPath);
  }

  get poisoned(): string | null {
    const e = Atomics.load(this.state, PoolState.POISON);
    return e === 0 ? null : errnoName(e, 'EIO');
  }

  set poisoned(errno: string | null) {
    Atomics.compareExchange(this.state, PoolState.POISON, 0, errno === null ? 0 : errnoNumber(errno));
  }

  get closed(): boolean {
    return Atomics.load(this.state, PoolState.CLOSED) !== 0;
  }

  /**
   * Closes the pool: its lane threads see it closed, and shutting their
   * sockets wakes those blocked in recv; the parts are unmapped once the last
   * lane has ended.
   */
  close(): void {
    Atomics.store(this.state, PoolState.CLOSED, 1);
    for (const fd of this.#lanes) native().laneStop(fd);
    if (this.#lanes.size === 0) unmapAll(this.parts);
  }

  get persistMethod(): PersistMethod {
    return this.parts.every((p) => p.isPmem) ? 'pmem' : 'msync';
  }

  /** First byte a client may write: the header is the daemon's. */
  get dataStart(): number {
    return this.set.headers === 'none' ? 0 : POOL_HDR_SIZE;
  }

  /**
   * Serves a lane on its own thread (native/lane.cc) until the client closes it
   * or the pool closes; `received`: bytes that came after the LANE frame.
   * `log` gets failures, `refused` malformed frames, `ended` the end.
   */
  serveLane(fd: number, lane: number, received: Uint8Array, log: (m: string) => void, refused: (why: string) => void, ended: () => void): void {
    this.#lanes.add(fd);
    const extents = new Float64Array(this.extents.flatMap((e) => [e.poolOffset, e.part, e.partOffset, e.length]));
    const parts = this.parts.map((p) => ({ buffer: p.buffer, fd: p.fd, isPmem: p.isPmem }));
    native().laneServe(fd, received, parts, extents, this.dataStart, this.size, this.state, this.setPath, lane, (kind, message) => {
      if (kind === 'log') log(message);
      else if (kind === 'refused') refused(message);
      else if (kind === 'end') {
        this.#lanes.delete(fd);
        ended();
        if (this.#lanes.size === 0 && this.closed) unmapAll(this.parts);
      }
    });
  }
}
