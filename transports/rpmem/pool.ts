/**
 * Remote pools, librpmem's calls: rpmem_create and rpmem_open (a control
 * session with the target's daemon, then the pool's lanes), rpmem_set_attr,
 * rpmem_close and rpmem_remove, and the list of pool sets the checkpoint tools
 * use. An open pool (RpmemPool) is its lanes (lanes.ts) plus its control
 * session (launch.ts) and the local memory persist() sends from.
 */
import { rpmemError } from '../../core/errors.js';
import { attrFromWire, attrToWire, checkAttr, type PoolAttr } from './header.js';
import { RpmemLanes, connectLanes, type PersistOptions, type PoolDescriptor } from './lanes.js';
import { control, removeOverSsh, session, type Control, type LaunchOptions, type Target } from './launch.js';
import { RpmemFrame } from './protocol.js';
import type { Dialed } from './connection.js';

export interface CreateOptions extends LaunchOptions {
  /** Lanes wanted; the pool gets at most what the target supports (pool.nlanes). */
  nlanes?: number;
  /** Pool attributes (stored in the pool header); null needs OPTION NOHDRS on the target. */
  attr?: PoolAttr | null;
  /** Local memory persist() reads from (librpmem's pool_addr); default: a zeroed buffer of the pool's size. */
  buffer?: Uint8Array;
  /** Write a one-part set file on the target when it has none (the checkpoint store's pools). */
  makeSet?: boolean;
}

export interface OpenOptions extends LaunchOptions {
  nlanes?: number;
  buffer?: Uint8Array;
}

export interface RemoveOptions extends LaunchOptions {
  /** Ignore errors of an inconsistent pool (RPMEM_REMOVE_FORCE). */
  force?: boolean;
  /** Remove the pool set file too (RPMEM_REMOVE_POOL_SET). */
  poolSet?: boolean;
}

function checkLanes(n: number | undefined): number {
  const v = n ?? 1;
  if (!Number.isInteger(v) || v < 1) throw rpmemError('EINVAL', `nlanes must be a positive integer (got ${String(n)})`);
  return v;
}

/** An open remote pool (RPMEMpool). */
export class RpmemPool extends RpmemLanes {
  /** The pool's attributes (null for a NOHDRS pool). */
  attr: PoolAttr | null;
  /**
   * Damage the target found in this pool's headers or their backups when it
   * opened the pool, and set right (header.ts: every header has a backup), in
   * words: "the header of F was damaged (...); recovered from its backup F.hdr".
   */
  repairs: string[] = [];
  readonly #control: Control;
  #local: Uint8Array | null;
  #closed = false;

  private constructor(desc: PoolDescriptor, lanes: Dialed[], control: Control, attr: PoolAttr | null, local: Uint8Array | null) {
    super(desc, lanes);
    this.#control = control;
    this.attr = attr;
    this.#local = local;
  }

  /** @internal */
  static async fromReply(c: Control, r: Record<string, unknown>, attr: PoolAttr | null, local: Uint8Array | undefined): Promise<RpmemPool> {
    const desc: PoolDescriptor = {
      address: c.address,
      port: c.port,
      secret: c.secret,
      pool: Number(r.pool),
      size: Number(r.size),
      nlanes: Number(r.nlanes),
      dataStart: Number(r.dataStart),
      persistMethod: r.persist === 'pmem' ? 'pmem' : 'msync',
      mapping: r.via === 'libpmem' ? 'libpmem' : 'mmap',
    };
    if (local !== undefined && local.byteLength < desc.size) throw rpmemError('EINVAL', `the local buffer (${local.byteLength} bytes) is smaller than the pool (${desc.size})`);
    const lanes = await connectLanes(desc, c.label);
    return new RpmemPool(desc, lanes, c, attr, local ?? null);
  }

  /** Local memory that persist() and flush() send from (allocated on first use unless given). */
  get data(): Uint8Array {
    this.#local ??= new Uint8Array(this.size);
    return this.#local;
  }

  /** Whether the lanes and the control connection keep the process alive. */
  override keepAlive(on: boolean): void {
    super.keepAlive(on);
    this.#control.keepAlive(on);
  }

  /** Where lanes of other threads can attach (RpmemLanes.attach). */
  descriptor(): PoolDescriptor {
    return { ...this.desc };
  }

  /** rpmem_persist: data[offset, offset+length) is persistent on the target when this resolves. */
  async persist(offset: number, length: number, opts: PersistOptions = {}): Promise<void> {
    this.check(offset, length, opts.lane);
    return this.persistFrom(offset, this.data.subarray(offset, offset + length), opts);
  }

  /** rpmem_flush: starts sending data[offset, offset+length); drain() waits for it. */
  async flush(offset: number, length: number, opts: PersistOptions = {}): Promise<void> {
    this.check(offset, length, opts.lane);
    return this.write(offset, this.data.subarray(offset, offset + length), opts);
  }

  /** rpmem_set_attr: overwrites the pool's attributes. */
  async setAttr(attr: PoolAttr): Promise<void> {
    if (this.error !== null) throw this.error;
    checkAttr(attr);
    try {
      await this.#control.ch.json(RpmemFrame.SET_ATTR, { target: this.desc.pool }, 'set_attr', attrToWire(attr));
      this.attr = attr;
    } catch (e) {
      this.sticky(e);
    }
  }

  /** rpmem_close: the pool stays on the target. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.detach();
    try {
      if (this.#control.ch.lost === null) await this.#control.ch.json(RpmemFrame.CLOSE, { target: this.desc.pool }, 'close');
    } finally {
      this.#control.end();
    }
  }
}

/** rpmem_create: creates the pool described by `poolSet` on the target and opens it. */
export async function create(target: Target, poolSet: string, size: number, opts: CreateOptions = {}): Promise<RpmemPool> {
  const nlanes = checkLanes(opts.nlanes);
  if (!Number.isSafeInteger(size) || size <= 0) throw rpmemError('EINVAL', `bad pool size ${size}`);
  const attr = opts.attr === undefined ? null : opts.attr;
  if (attr !== null) checkAttr(attr);
  const c = await control(target, opts);
  try {
    const r = await c.ch.json(RpmemFrame.CREATE, {}, 'create', { poolSet, size, nlanes, attr: attr === null ? null : attrToWire(attr), makeSet: opts.makeSet === true });
    return await RpmemPool.fromReply(c, r, attr, opts.buffer);
  } catch (e) {
    c.end();
    throw e;
  }
}

/** rpmem_open: opens an existing pool; its attributes are in `pool.attr`. */
export async function open(target: Target, poolSet: string, opts: OpenOptions = {}): Promise<RpmemPool> {
  const nlanes = checkLanes(opts.nlanes);
  const c = await control(target, opts);
  try {
    const r = await c.ch.json(RpmemFrame.OPEN, {}, 'open', { poolSet, nlanes });
    const attr = r.attr === null || r.attr === undefined ? null : attrFromWire(r.attr);
    const pool = await RpmemPool.fromReply(c, r, attr, opts.buffer);
    if (Array.isArray(r.repairs)) pool.repairs = r.repairs.map(String);
    return pool;
  } catch (e) {
    c.end();
    throw e;
  }
}

/** rpmem_remove: deletes the pool's parts (and with `poolSet`, its set file) on the target. */
export async function remove(target: Target, poolSet: string, opts: RemoveOptions = {}): Promise<void> {
  if (typeof target !== 'string') {
    const c = await session(target);
    try {
      await c.ch.json(RpmemFrame.REMOVE, {}, 'remove', { poolSet, force: opts.force === true, poolSetFile: opts.poolSet === true });
      return;
    } finally {
      c.end();
    }
  }
  return removeOverSsh(target, poolSet, opts);
}

/** The pool set files under `dir` on the target (an mprun addition: the checkpoint tools use it). */
export async function list(target: Target, dir: string, opts: LaunchOptions = {}): Promise<string[]> {
  const c = await control(target, opts);
  try {
    const r = await c.ch.json(RpmemFrame.LIST, {}, 'list', { dir });
    return Array.isArray(r.sets) ? (r.sets as string[]) : [];
  } finally {
    c.end();
  }
}
