/**
 * A remote pool's lanes: persist, flush, drain and read over independent TCP
 * connections to the target's daemon, each proving the secret and naming its
 * pool and lane (LANE) first. Order holds within a lane only. Errors are
 * sticky, as in librpmem: after a failed persist or a lost lane every call
 * reports the same errno. Any thread that has the pool's descriptor can attach
 * lanes of its own (RpmemLanes.attach; the checkpoint store's workers do).
 */
import { MprunError, rpmemError } from '../../core/errors.js';
import { dial, type Dialed, type RpmemConnection } from './connection.js';
import { crc32c } from './crc.js';
import { MAX_FRAME_PAYLOAD, RpmemFrame, WriteFlag, type PersistMethod } from './protocol.js';

export interface LaneOptions {
  lane?: number;
}

export interface WriteOptions extends LaneOptions {
  relaxed?: boolean;
  /** CRC32C of `bytes`, when the caller has it already (the checkpoint store's chunk CRCs). */
  crc?: number;
}

export interface PersistOptions extends LaneOptions {
  /** RPMEM_PERSIST_RELAXED: no atomicity guarantee wanted. */
  relaxed?: boolean;
  /** rpmem_deep_persist: to the lowest persistency domain. */
  deep?: boolean;
}

/** What a lane-only attachment needs (librpma's memory-region descriptor, in effect). */
export interface PoolDescriptor {
  address: string;
  port: number;
  secret: string;
  pool: number;
  size: number;
  dataStart: number;
  nlanes: number;
  persistMethod: PersistMethod;
  /** How the target maps the pool: through libpmem (pmem_map_file), or plain mmap without it. */
  mapping: 'libpmem' | 'mmap';
}

/** A pool's lanes: persist, flush, drain, read. Usable from any thread that has the descriptor. */
export class RpmemLanes {
  readonly size: number;
  readonly nlanes: number;
  readonly persistMethod: PersistMethod;
  /** How the target maps the pool: libpmem's pmem_map_file, or mmap. */
  readonly mapping: 'libpmem' | 'mmap';
  /** First byte persist() may touch: 4096 when the pool has a header (librpmem's rule). */
  readonly dataStart: number;
  protected readonly desc: PoolDescriptor;
  readonly #lanes: Dialed[];
  /** The first fatal error: every later call reports it (librpmem's sticky errors). */
  #error: MprunError | null = null;
  #detached = false;

  protected constructor(desc: PoolDescriptor, lanes: Dialed[]) {
    this.desc = desc;
    this.size = desc.size;
    this.nlanes = desc.nlanes;
    this.persistMethod = desc.persistMethod;
    this.mapping = desc.mapping;
    this.dataStart = desc.dataStart;
    this.#lanes = lanes;
    // librpmem's monitor: a lane that drops makes the pool fail at once, not at its next use.
    for (const l of lanes) {
      l.sock.on('close', () => {
        if (!this.#detached) this.#error ??= rpmemError('ECONNRESET', `a lane to the target at ${desc.address}:${desc.port} closed`);
      });
    }
  }

  /** Connects `desc.nlanes` lanes to an open pool. */
  static async attach(desc: PoolDescriptor, label = `${desc.address}:${desc.port}`): Promise<RpmemLanes> {
    return new RpmemLanes(desc, await connectLanes(desc, label));
  }

  /** The sticky error, if one happened. */
  get error(): MprunError | null {
    return this.#error;
  }

  protected sticky(e: unknown): never {
    const err = e instanceof MprunError ? e : rpmemError('EREMOTEIO', (e as Error).message);
    // Argument errors are the caller's; everything the target or the network says sticks.
    if (this.#error === null && err.errno !== 'EINVAL') this.#error = err;
    throw err;
  }

  protected check(offset: number, length: number, lane: number | undefined): RpmemConnection {
    if (this.#error !== null) throw this.#error;
    const l = lane ?? 0;
    if (!Number.isInteger(l) || l < 0 || l >= this.#lanes.length) throw rpmemError('EINVAL', `lane ${String(lane)} of a pool with ${this.#lanes.length} lane(s)`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || length < 0) throw rpmemError('EINVAL', `bad range: offset ${offset}, length ${length}`);
    if (offset < this.dataStart || offset + length > this.size) {
      throw rpmemError('EINVAL', `range [${offset}, ${offset + length}) is outside the pool's data area [${this.dataStart}, ${this.size})`);
    }
    return this.#lanes[l]!.ch;
  }

  /**
   * Writes `bytes` at `offset` without waiting for persistence (a flush from
   * any memory); drain() on the same lane makes it persistent. `bytes` must
   * not change until then.
   */
  async write(offset: number, bytes: Uint8Array, opts: WriteOptions = {}): Promise<void> {
    const ch = this.check(offset, bytes.byteLength, opts.lane);
    const aux = opts.relaxed === true ? WriteFlag.RELAXED : 0;
    const given = opts.crc !== undefined && bytes.byteLength <= MAX_FRAME_PAYLOAD ? opts.crc : undefined;
    try {
      for (let at = 0; at < bytes.byteLength; at += MAX_FRAME_PAYLOAD) {
        const piece = bytes.subarray(at, Math.min(bytes.byteLength, at + MAX_FRAME_PAYLOAD));
        await ch.post(RpmemFrame.WRITE, { offset: offset + at, aux, arg: (given ?? crc32c(piece)) | 0 }, piece);
      }
    } catch (e) {
      this.sticky(e);
    }
  }

  /** Writes `bytes` at `offset` and returns once they are persistent on the target. */
  async persistFrom(offset: number, bytes: Uint8Array, opts: PersistOptions = {}): Promise<void> {
    const ch = this.check(offset, bytes.byteLength, opts.lane);
    const deep = opts.deep === true ? WriteFlag.DEEP : 0;
    try {
      if (bytes.byteLength <= MAX_FRAME_PAYLOAD) {
        await ch.request(RpmemFrame.WRITE, { offset, aux: WriteFlag.ACK | deep | (opts.relaxed === true ? WriteFlag.RELAXED : 0), arg: crc32c(bytes) | 0 }, 'persist', bytes);
        return;
      }
      await this.write(offset, bytes, opts);
      await ch.request(RpmemFrame.DRAIN, { aux: deep }, 'persist');
    } catch (e) {
      this.sticky(e);
    }
  }

  /** Waits until every write and flush of the lane is persistent (rpmem_drain). */
  async drain(opts: LaneOptions & { deep?: boolean } = {}): Promise<void> {
    const ch = this.check(this.dataStart, 0, opts.lane);
    try {
      await ch.request(RpmemFrame.DRAIN, { aux: opts.deep === true ? WriteFlag.DEEP : 0 }, 'drain');
    } catch (e) {
      this.sticky(e);
    }
  }

  /** Reads `dst.byteLength` bytes of the pool at `offset` into `dst` (rpmem_read). */
  async read(dst: Uint8Array, offset: number, opts: LaneOptions = {}): Promise<Uint8Array> {
    const ch = this.check(offset, dst.byteLength, opts.lane);
    try {
      const pieces: Array<Promise<Uint8Array>> = [];
      for (let at = 0; at < dst.byteLength; at += MAX_FRAME_PAYLOAD) {
        const n = Math.min(MAX_FRAME_PAYLOAD, dst.byteLength - at);
        const into = dst.subarray(at, at + n);
        pieces.push(ch.request(RpmemFrame.READ, { offset: offset + at, length: n }, 'read', undefined, into).then((got) => (got === into ? got : (into.set(got), into))));
      }
      await Promise.all(pieces);
      return dst;
    } catch (e) {
      this.sticky(e);
    }
  }

  /**
   * Whether the lanes keep the process alive. A runtime that holds pools open
   * between operations (checkpoints) lets them go while idle, so that a
   * program that simply ends still reaches its exit handlers.
   */
  keepAlive(on: boolean): void {
    for (const l of this.#lanes) {
      if (on) l.sock.ref();
      else l.sock.unref();
    }
  }

  /** Closes the lanes (the pool stays open for its owner). */
  detach(): void {
    this.#detached = true;
    for (const l of this.#lanes) l.sock.destroy();
  }
}

/** Connects `desc.nlanes` lanes to an open pool; none stay open when one fails. */
export async function connectLanes(desc: PoolDescriptor, label: string): Promise<Dialed[]> {
  const lanes: Dialed[] = [];
  try {
    for (let lane = 0; lane < desc.nlanes; lane++) {
      const l = await dial(desc.address, desc.port, desc.secret, label);
      lanes.push(l);
      await l.ch.request(RpmemFrame.LANE, { target: desc.pool, arg: lane }, 'lane setup');
    }
  } catch (e) {
    for (const l of lanes) l.sock.destroy();
    throw e;
  }
  return lanes;
}

