/**
 * The rpmem client, librpmem's API over TCP: create/open a pool on a target,
 * persist ranges of local memory into it through independent lanes, read it
 * back, set its attributes, close it, remove it.
 *
 * A target is reached one of two ways:
 *   - a string, `[user@]host[:port]`: the daemon is started over ssh like
 *     rpmemd (`$RPMEM_SSH -T -oBatchMode=yes host $RPMEM_CMD`), one daemon per
 *     pool, control on its stdin/stdout;
 *   - a DaemonEndpoint: a daemon mprun started for the job, reached by a TCP
 *     control session that proves the job's secret.
 * Lanes are TCP connections to the daemon, each proving the secret; order holds
 * within a lane only. Errors are sticky, as in librpmem: after a failed
 * persist or a lost connection every call reports the same errno.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { packageRoot } from '../../native/index.js';
import { MprunError, rpmemError } from '../../core/errors.js';
import { FrameParser, HEADER_BYTES, type HeaderFields } from '../../core/frames.js';
import { shellQuote, shellWords } from '../../core/shell.js';
import { crc32c } from './crc.js';
import { attrFromWire, attrToWire, checkAttr, type PoolAttr } from './header.js';
import { errnoName, WriteFlag, MAX_FRAME_PAYLOAD, RpmemFrame, RPMEM_PROTOCOL, type PersistMethod } from './protocol.js';


/** A daemon mprun started: where its lanes listen, and the secret they prove. */
export interface DaemonEndpoint {
  address: string;
  port: number;
  secret: string;
  /** For messages (the target as the user named it). */
  label?: string;
}

export type Target = string | DaemonEndpoint;

export interface LaunchOptions {
  /** The daemon's pool set directory (`--poolset-dir`); default: its configuration, else $HOME. */
  poolsetDir?: string;
}

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

function statusError(status: number, body: Uint8Array, what: string): MprunError {
  const name = errnoName(status);
  let message = `${what} failed on the target`;
  try {
    const j = JSON.parse(Buffer.from(body).toString('utf8')) as { message?: string };
    if (typeof j.message === 'string') message = j.message;
  } catch {
    // a data reply, or no body
  }
  return rpmemError(name, message);
}

interface Pending {
  resolve: (payload: Uint8Array) => void;
  reject: (e: MprunError) => void;
  into: Uint8Array | null;
  what: string;
}

/** Requests and replies over one byte stream, matched by id. */
class FrameChannel {
  readonly #write: (b: Buffer | Uint8Array) => boolean;
  readonly #pending = new Map<number, Pending>();
  readonly #parser: FrameParser;
  #nextId = 1;
  lost: MprunError | null = null;
  readonly #drainWait: () => Promise<void>;

  constructor(write: (b: Buffer | Uint8Array) => boolean, drainWait: () => Promise<void>) {
    this.#write = write;
    this.#drainWait = drainWait;
    this.#parser = new FrameParser(
      {
        begin: (h) => {
          const p = this.#pending.get(h.id);
          if (h.type !== RpmemFrame.REPLY || p === undefined) throw new Error(`unexpected ${RPMEM_PROTOCOL.typeName(h.type)} ${h.id} from the target`);
          const n = h.bytes - HEADER_BYTES;
          return h.arg === 0 && p.into !== null && p.into.byteLength === n ? p.into : null;
        },
        end: (h, payload) => {
          const p = this.#pending.get(h.id)!;
          this.#pending.delete(h.id);
          if (h.arg !== 0) p.reject(statusError(h.arg, payload, p.what));
          else p.resolve(payload);
        },
      },
      RPMEM_PROTOCOL,
    );
  }

  feed(chunk: Uint8Array): void {
    try {
      this.#parser.push(chunk);
    } catch (e) {
      this.fail(rpmemError('EPROTO', `protocol error from the target: ${(e as Error).message}`));
    }
  }

  fail(e: MprunError): void {
    if (this.lost !== null) return;
    this.lost = e;
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }

  /** Sends a frame; waits for room when the stream is full. */
  async post(type: number, h: HeaderFields, payload?: Uint8Array): Promise<void> {
    if (this.lost !== null) throw this.lost;
    const n = payload?.byteLength ?? 0;
    const head = Buffer.allocUnsafe(HEADER_BYTES);
    RPMEM_PROTOCOL.writeHeader(head, 0, type, n, h);
    let room = this.#write(head);
    if (n > 0) room = this.#write(payload!);
    if (!room) await this.#drainWait();
  }

  request(type: number, h: HeaderFields, what: string, payload?: Uint8Array, into: Uint8Array | null = null): Promise<Uint8Array> {
    if (this.lost !== null) return Promise.reject(this.lost);
    const id = this.#nextId++;
    const reply = new Promise<Uint8Array>((resolve, reject) => this.#pending.set(id, { resolve, reject, into, what }));
    this.post(type, { ...h, id }, payload).catch((e: MprunError) => this.fail(e));
    return reply;
  }

  async json(type: number, h: HeaderFields, what: string, body?: unknown): Promise<Record<string, unknown>> {
    const r = await this.request(type, h, what, body === undefined ? undefined : Buffer.from(JSON.stringify(body)));
    return r.byteLength === 0 ? {} : (JSON.parse(Buffer.from(r).toString('utf8')) as Record<string, unknown>);
  }
}

/**
 * Bytes a lane may have handed to its socket and not yet to the kernel before a
 * writer waits, and the level at which it goes on: several frames stay in
 * flight, and the socket never runs dry while the writer waits (Node's 'drain'
 * comes only once the queue is empty).
 */
const LANE_QUEUE_HIGH = 8 * MAX_FRAME_PAYLOAD;
const LANE_QUEUE_LOW = 4 * MAX_FRAME_PAYLOAD;

/** Bytes one read of a lane may take: with Node's default (64 KiB), a 1 MiB reply cost 16 event-loop turns. */
const READ_BUFFER_BYTES = 4 * 1024 * 1024;

/** A channel over `sock`; `feed` gets what the socket reads (see dial: reads land in one reused buffer). */
function socketChannel(sock: Socket, label: string): FrameChannel {
  let queued = 0;
  let waiters: Array<() => void> = [];
  const flushed = (n: number) => (): void => {
    queued -= n;
    if (queued <= LANE_QUEUE_LOW && waiters.length > 0) {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    }
  };
  sock.on('close', () => flushed(0)());
  const ch = new FrameChannel(
    (b) => {
      queued += b.byteLength;
      sock.write(b, flushed(b.byteLength));
      return queued < LANE_QUEUE_HIGH;
    },
    () => (queued >= LANE_QUEUE_HIGH && !sock.destroyed ? new Promise<void>((r) => waiters.push(r)) : Promise.resolve()),
  );
  sock.on('error', (e) => ch.fail(rpmemError('ECONNRESET', `connection to ${label} failed: ${e.message}`)));
  sock.on('close', () => ch.fail(rpmemError('ECONNRESET', `connection to ${label} closed`)));
  return ch;
}

async function dial(address: string, port: number, secret: string, label: string): Promise<{ sock: Socket; ch: FrameChannel }> {
  let ch: FrameChannel | null = null;
  // Reads land in one buffer, reused: the parser copies every payload out (a read reply straight
  // into the caller's array) before the next read.
  const sock = connect({
    host: address,
    port,
    onread: {
      buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
      callback: (n: number, buf: Uint8Array): boolean => {
        ch?.feed(buf.subarray(0, n));
        return true;
      },
    },
  });
  sock.setNoDelay(true);
  try {
    await once(sock, 'connect');
  } catch (e) {
    throw rpmemError('ECONNREFUSED', `cannot connect to ${label} at ${address}:${port}: ${(e as Error).message}`);
  }
  const channel = socketChannel(sock, label);
  ch = channel;
  await channel.request(RpmemFrame.AUTH, {}, 'authentication', Buffer.from(secret));
  return { sock, ch: channel };
}

/** A control channel to a daemon and how to end it. */
interface Control {
  ch: FrameChannel;
  address: string;
  port: number;
  secret: string;
  label: string;
  end(): void;
  /** Whether the connection keeps the process alive (Node's ref/unref). */
  keepAlive(on: boolean): void;
}

/** The daemon command (RPMEM_CMD), this installation's by default. */
export function daemonCommand(poolsetDir?: string): string {
  const base = process.env.RPMEM_CMD ?? `${process.execPath} ${join(packageRoot, 'bin', 'mprun-rpmemd.js')}`;
  return poolsetDir === undefined ? base : `${base} --poolset-dir ${shellQuote(poolsetDir)}`;
}

/**
 * The command that runs `remoteCmd` on `target` (`[user@]host[:port]`) as
 * librpmem does: `ssh -T -oBatchMode=yes [-p port] host cmd`, with `ssh`
 * ($RPMEM_SSH by default) in place of plain ssh.
 */
export function sshArgv(target: string, remoteCmd: string, ssh: string[] = shellWords(process.env.RPMEM_SSH ?? 'ssh')): string[] {
  const m = /^(.*?)(?::(\d+))?$/.exec(target)!;
  return [...ssh, '-T', '-oBatchMode=yes', ...(m[2] !== undefined ? ['-p', m[2], m[1]!] : [m[1]!]), remoteCmd];
}

/**
 * Starts a daemon: over ssh for a target string (RPMEM_SSH replaces ssh), or as a
 * local child when `argv` is given. Reads its status word, sends the secret,
 * and returns the control channel.
 */
export async function spawnDaemon(target: string, opts: LaunchOptions & { argv?: string[]; secret?: string; onStderr?: (d: Buffer) => void } = {}): Promise<Control & { child: ChildProcess }> {
  const argv = opts.argv ?? sshArgv(target, daemonCommand(opts.poolsetDir));
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const label = `rpmem target ${target}`;
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (opts.onStderr !== undefined) opts.onStderr(d);
    else stderr = (stderr + d.toString()).slice(-4000);
  });
  child.stdin!.on('error', () => undefined);
  const ch = new FrameChannel(
    (b) => child.stdin!.write(b),
    () => (child.stdin!.writableNeedDrain ? once(child.stdin!, 'drain').then(() => undefined) : Promise.resolve()),
  );
  const started = new Promise<void>((resolve, reject) => {
    let head = Buffer.alloc(0);
    let statusRead = false;
    child.stdout!.on('data', (d: Buffer) => {
      if (statusRead) return ch.feed(d);
      head = Buffer.concat([head, d]);
      if (head.byteLength < 4) return;
      statusRead = true;
      const status = head.readInt32BE(0);
      if (status !== 0) reject(rpmemError(errnoName(status), `${label} could not start${stderr ? `: ${stderr.trim()}` : ''}`));
      else resolve();
      if (head.byteLength > 4) ch.feed(head.subarray(4));
    });
    child.on('error', (e) => reject(rpmemError('ENOENT', `cannot run ${argv[0]}: ${e.message}`)));
    child.on('exit', (code, signal) => {
      const why = `${label} ended (${signal ?? `exit code ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`;
      reject(rpmemError('ECONNRESET', why));
      ch.fail(rpmemError('ECONNRESET', why));
    });
  });
  await started;
  // The secret travels on the ssh channel; the lanes prove it to the daemon.
  const secret = opts.secret ?? randomBytes(32).toString('hex');
  const reply = await ch.request(RpmemFrame.AUTH, {}, `starting ${label}`, Buffer.from(secret));
  const where = JSON.parse(Buffer.from(reply).toString('utf8')) as { address: string; port: number };
  const streams = [child.stdin, child.stdout, child.stderr] as Array<{ ref?(): void; unref?(): void } | null>;
  const keepAlive = (on: boolean): void => {
    if (on) child.ref();
    else child.unref();
    for (const s of streams) (on ? s?.ref : s?.unref)?.call(s);
  };
  return { child, ch, secret, label, address: where.address, port: where.port, end: () => child.stdin!.end(), keepAlive };
}

/** A TCP control session to a daemon mprun started. */
async function session(ep: DaemonEndpoint): Promise<Control> {
  const label = `rpmem target ${ep.label ?? `${ep.address}:${ep.port}`}`;
  const { sock, ch } = await dial(ep.address, ep.port, ep.secret, label);
  return { ch, address: ep.address, port: ep.port, secret: ep.secret, label, end: () => sock.end(), keepAlive: (on) => void (on ? sock.ref() : sock.unref()) };
}

function control(target: Target, opts: LaunchOptions): Promise<Control> {
  return typeof target === 'string' ? spawnDaemon(target, opts) : session(target);
}

function checkLanes(n: number | undefined): number {
  const v = n ?? 1;
  if (!Number.isInteger(v) || v < 1) throw rpmemError('EINVAL', `nlanes must be a positive integer (got ${String(n)})`);
  return v;
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
  readonly #lanes: Array<{ sock: Socket; ch: FrameChannel }>;
  /** The first fatal error: every later call reports it (librpmem's sticky errors). */
  #error: MprunError | null = null;
  #detached = false;

  protected constructor(desc: PoolDescriptor, lanes: Array<{ sock: Socket; ch: FrameChannel }>) {
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

  protected check(offset: number, length: number, lane: number | undefined): FrameChannel {
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

async function connectLanes(desc: PoolDescriptor, label: string): Promise<Array<{ sock: Socket; ch: FrameChannel }>> {
  const lanes: Array<{ sock: Socket; ch: FrameChannel }> = [];
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

  private constructor(desc: PoolDescriptor, lanes: Array<{ sock: Socket; ch: FrameChannel }>, control: Control, attr: PoolAttr | null, local: Uint8Array | null) {
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
  // As librpmem: `ssh ... rpmemd --remove <set> [--force] [--pool-set]`; the exit status is the errno.
  const cmd = `${daemonCommand(opts.poolsetDir)} --remove ${shellQuote(poolSet)}${opts.force === true ? ' --force' : ''}${opts.poolSet === true ? ' --pool-set' : ''}`;
  const argv = sshArgv(target, cmd);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code === 0) return;
  const name = code !== null ? errnoName(code) : 'EREMOTEIO';
  throw rpmemError(name, stderr.trim().replace(/^mprun-rpmemd: /, '').replace(/ \([A-Z]+\)$/, '') || `removing ${poolSet} on ${target} failed`);
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
