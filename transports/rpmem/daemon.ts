/**
 * The rpmem target daemon (rpmemd's role): serves pools under its pool set
 * directory to clients that reach it over ssh (control on stdin/stdout) or, when
 * mprun started it for a job, over TCP sessions that prove the job's secret.
 * Data lanes are TCP connections that prove the same secret first.
 *
 * Durability rules (research/rpmem.md): a persist is acknowledged only after
 * pmem_persist / pmem_msync returned success; a failure poisons the pool, and
 * every later request on it reports that error (never a retry that could
 * "succeed" after the kernel dropped the dirty pages). Space is allocated when a
 * pool is created. A malformed or unauthenticated frame closes that connection,
 * logged; the daemon keeps serving.
 */
import { timingSafeEqual } from 'node:crypto';
import { appendFileSync, existsSync, writev, mkdirSync, readdirSync, readFileSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { dirname, isAbsolute, join, normalize, relative, sep } from 'node:path';
import { native } from '../../native/index.js';
import { MprunError } from '../../runtime/errors.js';
import { FrameParser, HEADER_BYTES, ProtocolError, STREAM, type Header } from '../frames.js';
import { crc32c } from './crc.js';
import { attrFromWire, attrToWire, decodeHeader, encodeHeader, emptyAttr, type PoolAttr } from './header.js';
import { F, MAX_FRAME_PAYLOAD, R, RPMEM_PROTOCOL, type PersistMethod } from './protocol.js';
import { capacityOf, extentsOf, formatPoolSet, MIN_POOL, parsePoolSet, partHasHeader, POOL_HDR_SIZE, splitRange, type Extent, type PoolSet } from './poolset.js';

export interface DaemonOptions {
  poolsetDir: string;
  /** Address the lanes listen on. */
  listen: string;
  /** Failures and closed connections: always logged. */
  log: (message: string) => void;
  /** Pools created and removed, requests refused as the API expects (ENOENT, EEXIST, EBUSY): with log-level info. */
  info?: (message: string) => void;
}

const ERRNO = osConstants.errno as Record<string, number>;
/** A failure to report to the client: an errno name and why. */
class Refusal extends Error {
  constructor(
    readonly errno: string,
    message: string,
  ) {
    super(message);
  }
}

function errnoOf(e: unknown): string {
  if (e instanceof Refusal) return e.errno;
  if (e instanceof MprunError && e.errno !== undefined) return e.errno === 'EAGAIN' ? 'EBUSY' : e.errno;
  return 'EREMOTEIO';
}

interface MappedPart {
  buffer: ArrayBuffer;
  bytes: Uint8Array;
  isPmem: boolean;
  via: 'libpmem' | 'mmap';
  fd: number;
}

/** A pool open in this daemon. */
class OpenPool {
  /** The first failed persist (an errno name): every later request reports it. */
  poisoned: string | null = null;
  /** Persists running on the thread pool: the parts stay mapped until they end. */
  inflight = 0;
  closed = false;
  readonly extents: Extent[];
  /** Testing hook: MPRUN_RPMEMD_FAIL_PERSIST=N makes the N-th persist of this daemon fail with EIO. */
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
  }

  get persistMethod(): PersistMethod {
    return this.parts.every((p) => p.isPmem) ? 'pmem' : 'msync';
  }

  /** First byte a client may write: the header is the daemon's. */
  get dataStart(): number {
    return this.set.headers === 'none' ? 0 : POOL_HDR_SIZE;
  }

  /** The mapped bytes of [offset, offset+length) when they lie in one part (a write lands there directly). */
  window(offset: number, length: number): Uint8Array | null {
    const pieces = splitRange(this.extents, offset, length);
    if (pieces.length !== 1) return null;
    const e = pieces[0]!;
    return this.parts[e.part]!.bytes.subarray(e.partOffset, e.partOffset + e.length);
  }

  /** Runs `op` as in-flight work: the parts stay mapped (and their fds open) until it ends. */
  async hold<T>(op: () => Promise<T>): Promise<T> {
    this.inflight++;
    try {
      return await op();
    } finally {
      if (--this.inflight === 0 && this.closed) unmapAll(this.parts);
    }
  }

  /**
   * Applies a verified write: on pmem a store into the mapping (pmem_persist
   * flushes it); otherwise pwrite into the page cache on the libuv thread pool,
   * so the daemon's thread keeps receiving meanwhile, and no write-protect fault
   * is taken per page an earlier writeback left clean. Null, or the errno.
   */
  applyAsync(offset: number, pieces: Uint8Array[], length: number): Promise<string | null> {
    if (this.closed) return Promise.resolve('EBADF');
    return this.hold(async () => {
      const extents = splitRange(this.extents, offset, length);
      // One writev per part: the pieces as received, no copy (a range across parts is joined once).
      let src: Uint8Array[] = pieces;
      let at = 0;
      for (const e of extents) {
        const part = this.parts[e.part]!;
        let bufs: Uint8Array[];
        if (extents.length === 1) bufs = src;
        else {
          const whole = src.length === 1 ? src[0]! : Buffer.concat(src);
          src = [whole];
          bufs = [whole.subarray(at, at + e.length)];
        }
        at += e.length;
        if (part.isPmem) {
          let o = e.partOffset;
          for (const b of bufs) {
            part.bytes.set(b, o);
            o += b.byteLength;
          }
          continue;
        }
        const err = await writevAll(part.fd, bufs, e.partOffset, e.length);
        if (err !== null) return err;
      }
      return null;
    });
  }

  /** Starts the disk on a range (sync_file_range) ahead of its persist. */
  startWriteback(offset: number, length: number): void {
    if (this.closed) return;
    for (const e of splitRange(this.extents, offset, length)) native().poolWriteback(this.parts[e.part]!.fd, e.partOffset, e.length);
  }

  copyOut(offset: number, dst: Uint8Array): void {
    let at = 0;
    for (const e of splitRange(this.extents, offset, dst.byteLength)) {
      dst.set(this.parts[e.part]!.bytes.subarray(e.partOffset, e.partOffset + e.length), at);
      at += e.length;
    }
  }
}

/** Flushed bytes on a lane after which their writeback starts before the drain. */
const WRITEBACK_BYTES = Number(process.env.MPRUN_RPMEMD_WRITEBACK_MIB ?? 8) * 1024 * 1024;

let persistCount = 0;
const failPersistAt = Number(process.env.MPRUN_RPMEMD_FAIL_PERSIST ?? 0);

/** Persists [offset, offset+length) of a pool; resolves to null or the errno name of the failure. */
function persistRange(pool: OpenPool, offset: number, length: number, deep: boolean): Promise<string | null> {
  if (pool.poisoned !== null) return Promise.resolve(pool.poisoned);
  if (pool.closed) return Promise.resolve('EBADF');
  persistCount++;
  if (failPersistAt > 0 && persistCount === failPersistAt) return Promise.resolve('EIO');
  const pieces = splitRange(pool.extents, offset, length);
  return pool.hold(async () => {
    const errs = await Promise.all(
      pieces.map(
        (e) =>
          new Promise<string | null>((done) => {
            const part = pool.parts[e.part]!;
            native().poolPersistAsync(part.buffer, e.partOffset, e.length, part.isPmem, deep, done);
          }),
      ),
    );
    return errs.find((x) => x !== null) ?? null;
  });
}

function persistHeaders(pool: OpenPool): void {
  pool.parts.forEach((p, i) => {
    if (!partHasHeader(pool.set, i)) return;
    const err = native().poolPersist(p.buffer, 0, POOL_HDR_SIZE, p.isPmem, false);
    if (err !== null) {
      pool.poisoned = err;
      throw new Refusal(err, `persisting the pool header of ${pool.setPath} failed`);
    }
  });
}

function writeHeaders(pool: OpenPool): void {
  pool.parts.forEach((p, i) => {
    if (partHasHeader(pool.set, i)) encodeHeader({ attr: pool.attr ?? emptyAttr(), poolSize: pool.size, part: i, parts: pool.parts.length }, p.bytes.subarray(0, POOL_HDR_SIZE));
  });
  persistHeaders(pool);
}

function unmapAll(parts: MappedPart[]): void {
  for (const p of parts) native().release(p.buffer);
}

/** A connection's role, once it has proved the secret. */
type Role = { kind: 'new' } | { kind: 'control' } | { kind: 'lane'; pool: OpenPool; lane: number };

export class RpmemDaemon {
  readonly #opts: DaemonOptions;
  #secret: Buffer | null = null;
  #server: Server | null = null;
  readonly #pools = new Map<number, OpenPool>();
  readonly #owners = new Map<number, object>();
  #nextPool = 1;
  readonly #sockets = new Set<Socket>();

  constructor(opts: DaemonOptions) {
    this.#opts = opts;
  }

  /** The set file's absolute path; names that leave the pool set directory are refused. */
  #setPath(name: unknown): string {
    if (typeof name !== 'string' || name === '' || isAbsolute(name)) throw new Refusal('EINVAL', `pool set name must be a relative path (got ${JSON.stringify(name)})`);
    const full = normalize(join(this.#opts.poolsetDir, name));
    const rel = relative(this.#opts.poolsetDir, full);
    if (rel.startsWith('..') || rel.split(sep).includes('..')) throw new Refusal('EINVAL', `pool set ${name} is outside the pool set directory`);
    return full;
  }

  #readSet(path: string): PoolSet {
    if (!existsSync(path)) throw new Refusal('ENOENT', `no pool set file ${path}`);
    return parsePoolSet(readFileSync(path, 'utf8'), path);
  }

  #lock(path: string): number {
    try {
      return native().lockPool(path);
    } catch (e) {
      if (e instanceof MprunError && e.errno === 'EAGAIN') throw new Refusal('EBUSY', `pool ${path} is already in use`);
      throw e;
    }
  }

  #register(pool: OpenPool, owner: object): void {
    this.#pools.set(pool.id, pool);
    this.#owners.set(pool.id, owner);
  }

  create(req: Record<string, unknown>, owner: object): Record<string, unknown> {
    const path = this.#setPath(req.poolSet);
    const size = Number(req.size);
    if (!Number.isSafeInteger(size) || size < MIN_POOL) throw new Refusal('EINVAL', `pool size ${String(req.size)} is below the minimum of ${MIN_POOL} bytes`);
    if (size % POOL_HDR_SIZE !== 0) throw new Refusal('EINVAL', `pool size ${size} is not a multiple of ${POOL_HDR_SIZE}`);
    if (req.makeSet === true && !existsSync(path)) {
      // The checkpoint store's pools: one part beside the set file, one header.
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const partName = `${path.slice(dirname(path).length + 1).replace(/\.set$/, '')}.part0`;
      writeFileSync(path, formatPoolSet({ headers: 'single', parts: [{ path: partName, size: Math.max(size, 2 * 1024 * 1024) }] }), { mode: 0o600 });
      native().fsyncPath(path);
      native().fsyncPath(dirname(path));
    }
    const set = this.#readSet(path);
    const attr = req.attr === null || req.attr === undefined ? null : attrFromWire(req.attr);
    if (attr !== null && set.headers === 'none') throw new Refusal('EINVAL', `pool set ${path} has OPTION NOHDRS: it cannot hold attributes`);
    if (attr === null && set.headers !== 'none') throw new Refusal('EINVAL', `creating a pool without attributes needs OPTION NOHDRS in ${path}`);
    const capacity = capacityOf(set);
    if (size > capacity) throw new Refusal('EFBIG', `pool of ${size} bytes does not fit pool set ${path} (${capacity} bytes)`);
    for (const p of set.parts) if (existsSync(p.path)) throw new Refusal('EEXIST', `pool part ${p.path} exists`);
    const lockFd = this.#lock(path);
    const parts: MappedPart[] = [];
    try {
      for (const p of set.parts) {
        const m = native().poolMap(p.path, p.size, true);
        parts.push({ buffer: m.buffer, bytes: new Uint8Array(m.buffer), isPmem: m.isPmem, via: m.via, fd: m.fd });
      }
      for (const d of new Set(set.parts.map((p) => dirname(p.path)))) native().fsyncPath(d);
      const pool = new OpenPool(this.#nextPool++, path, set, parts, size, attr, lockFd, this.#lanes(req.nlanes));
      writeHeaders(pool);
      this.#register(pool, owner);
      this.#opts.info?.(`created pool ${path} (${size} bytes, ${set.parts.length} part(s), ${pool.persistMethod})`);
      return this.#describe(pool);
    } catch (e) {
      unmapAll(parts);
      for (const p of set.parts.slice(0, parts.length + 1)) {
        try {
          unlinkSync(p.path);
        } catch {
          // not made
        }
      }
      native().closeFd(lockFd);
      throw e;
    }
  }

  open(req: Record<string, unknown>, owner: object): Record<string, unknown> {
    const path = this.#setPath(req.poolSet);
    const set = this.#readSet(path);
    const lockFd = this.#lock(path);
    const parts: MappedPart[] = [];
    try {
      for (const p of set.parts) {
        if (!existsSync(p.path)) throw new Refusal('ENOENT', `pool part ${p.path} does not exist`);
        const m = native().poolMap(p.path, p.size, false);
        parts.push({ buffer: m.buffer, bytes: new Uint8Array(m.buffer), isPmem: m.isPmem, via: m.via, fd: m.fd });
      }
      let size = capacityOf(set);
      let attr: PoolAttr | null = null;
      if (set.headers !== 'none') {
        const h = decodeHeader(parts[0]!.bytes, set.parts[0]!.path);
        if (h.parts !== set.parts.length) throw new Refusal('EINVAL', `${path}: the pool was created with ${h.parts} part(s), the set now lists ${set.parts.length}`);
        parts.forEach((p, i) => {
          if (i > 0 && partHasHeader(set, i)) decodeHeader(p.bytes, set.parts[i]!.path);
        });
        size = h.poolSize;
        attr = h.attr;
      }
      const pool = new OpenPool(this.#nextPool++, path, set, parts, size, attr, lockFd, this.#lanes(req.nlanes));
      this.#register(pool, owner);
      return { ...this.#describe(pool), attr: attr === null ? null : attrToWire(attr) };
    } catch (e) {
      unmapAll(parts);
      native().closeFd(lockFd);
      throw e;
    }
  }

  #lanes(n: unknown): number {
    const v = Number(n ?? 1);
    return Number.isInteger(v) && v >= 1 ? Math.min(v, 64) : 1;
  }

  #describe(pool: OpenPool): Record<string, unknown> {
    return { pool: pool.id, size: pool.size, nlanes: pool.nlanes, persist: pool.persistMethod, dataStart: pool.dataStart, via: pool.parts[0]!.via };
  }

  #pool(id: number, owner: object): OpenPool {
    const pool = this.#pools.get(id);
    if (pool === undefined || this.#owners.get(id) !== owner) throw new Refusal('EINVAL', `no open pool ${id} in this session`);
    return pool;
  }

  setAttr(id: number, wire: unknown, owner: object): void {
    const pool = this.#pool(id, owner);
    if (pool.poisoned !== null) throw new Refusal(pool.poisoned, `pool ${pool.setPath} failed an earlier persist`);
    if (pool.set.headers === 'none') throw new Refusal('EINVAL', `pool ${pool.setPath} has no header (NOHDRS)`);
    pool.attr = attrFromWire(wire);
    writeHeaders(pool);
  }

  closePool(id: number, owner: object): void {
    const pool = this.#pool(id, owner);
    this.#pools.delete(id);
    this.#owners.delete(id);
    for (const s of this.#sockets) {
      const role = (s as SocketWithRole).role;
      if (role?.kind === 'lane' && role.pool === pool) s.destroy();
    }
    pool.closed = true;
    if (pool.inflight === 0) unmapAll(pool.parts);
    native().closeFd(pool.lockFd);
  }

  remove(req: Record<string, unknown>): void {
    const path = this.#setPath(req.poolSet);
    const set = this.#readSet(path);
    const lockFd = this.#lock(path);
    try {
      if (req.force !== true && set.headers !== 'none') {
        set.parts.forEach((p, i) => {
          if (!partHasHeader(set, i)) return;
          if (!existsSync(p.path)) throw new Refusal('ENOENT', `pool part ${p.path} does not exist (use force)`);
          const m = native().poolMap(p.path, p.size, false);
          try {
            decodeHeader(new Uint8Array(m.buffer), p.path);
          } finally {
            native().release(m.buffer);
          }
        });
      }
      for (const p of set.parts) {
        try {
          unlinkSync(p.path);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || req.force !== true) throw new Refusal('ENOENT', `cannot remove ${p.path}: ${(e as Error).message}`);
        }
      }
      if (req.poolSetFile === true) {
        unlinkSync(path);
        // A job directory the store made is removed with its last pool.
        if (dirname(path) !== this.#opts.poolsetDir && readdirSync(dirname(path)).length === 0) rmdirSync(dirname(path));
      }
      for (const d of new Set([dirname(path), ...set.parts.map((p) => dirname(p.path))])) if (existsSync(d)) native().fsyncPath(d);
      this.#opts.info?.(`removed pool ${path}${req.poolSetFile === true ? ' and its set file' : ''}`);
    } finally {
      native().closeFd(lockFd);
    }
  }

  /** The pool set files under a directory of the pool set directory (relative names). */
  list(dir: unknown): string[] {
    const full = this.#setPath(typeof dir === 'string' && dir !== '' ? dir : '.');
    if (!existsSync(full)) return [];
    const base = relative(this.#opts.poolsetDir, full);
    return readdirSync(full)
      .filter((f) => f.endsWith('.set'))
      .sort()
      .map((f) => (base === '' ? f : `${base}/${f}`));
  }

  /** Closes every pool a session opened (its channel ended: librpmem keeps the pool on the target). */
  closeOwned(owner: object): void {
    for (const [id, o] of [...this.#owners]) if (o === owner) this.closePool(id, owner);
  }

  /** Sets the secret and starts the lane listener; returns where it listens. */
  async start(secret: Buffer): Promise<{ address: string; port: number }> {
    this.#secret = secret;
    const server = createServer((s) => this.#accept(s));
    this.#server = server;
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen({ host: this.#opts.listen, port: 0 }, () => ok());
    });
    const a = server.address();
    if (a === null || typeof a === 'string') throw new Error('the lane listener has no TCP address');
    return { address: this.#opts.listen, port: a.port };
  }

  stop(): void {
    this.#server?.close();
    for (const s of this.#sockets) s.destroy();
    for (const [id, owner] of [...this.#owners]) this.closePool(id, owner);
  }

  /** Serves one control channel (stdin/stdout, or an authenticated TCP session). */
  control(owner: object, reply: (frame: Buffer) => void, h: Header, payload: Uint8Array): void {
    const ok = (body?: unknown): void => reply(RPMEM_PROTOCOL.frame(R.REPLY, { id: h.id }, body === undefined ? undefined : Buffer.from(JSON.stringify(body))));
    const fail = (e: unknown): void => {
      const errno = errnoOf(e);
      const message = (e as Error).message;
      const expected = errno === 'ENOENT' || errno === 'EEXIST' || errno === 'EBUSY';
      (expected ? this.#opts.info : this.#opts.log)?.(`${RPMEM_PROTOCOL.typeName(h.type)} refused: ${message}`);
      reply(RPMEM_PROTOCOL.frame(R.REPLY, { id: h.id, arg: ERRNO[errno] ?? ERRNO.EREMOTEIO! }, Buffer.from(JSON.stringify({ errno, message }))));
    };
    try {
      const body = payload.byteLength > 0 && h.type !== R.AUTH ? (JSON.parse(Buffer.from(payload).toString('utf8')) as Record<string, unknown>) : {};
      if (typeof body !== 'object' || body === null) throw new ProtocolError('control body is not an object');
      switch (h.type) {
        case R.CREATE:
          return ok(this.create(body, owner));
        case R.OPEN:
          return ok(this.open(body, owner));
        case R.CLOSE:
          this.closePool(h.target, owner);
          return ok();
        case R.SET_ATTR:
          this.setAttr(h.target, body, owner);
          return ok();
        case R.REMOVE:
          this.remove(body);
          return ok();
        case R.LIST:
          return ok({ sets: this.list(body.dir) });
        default:
          throw new ProtocolError(`${RPMEM_PROTOCOL.typeName(h.type)} is not a control request`);
      }
    } catch (e) {
      if (e instanceof ProtocolError || e instanceof SyntaxError) throw new ProtocolError(e.message);
      fail(e);
    }
  }

  #checkSecret(payload: Uint8Array): boolean {
    const s = this.#secret;
    return s !== null && payload.byteLength === s.byteLength && timingSafeEqual(payload, s);
  }

  #accept(sock: Socket): void {
    const s = sock as SocketWithRole;
    this.#sockets.add(s);
    s.setNoDelay(true);
    const peer = `${s.remoteAddress}:${s.remotePort}`;
    let role: Role | null = null; // null: not authenticated yet
    const owner = {};
    let lane: Lane | null = null;
    const send = (b: Buffer): void => {
      if (!s.destroyed) s.write(b);
    };
    const close = (why: string): void => {
      this.#opts.log(`closed a connection from ${peer}: ${why}`);
      s.destroy();
    };
    const parser = new FrameParser(
      {
        begin: (h) => {
          if (role === null && h.type !== R.AUTH) throw new ProtocolError(`${RPMEM_PROTOCOL.typeName(h.type)} before AUTH`);
          if (h.type === R.WRITE) {
            if (lane === null) throw new ProtocolError('WRITE on a connection that is not a lane');
            return lane.destination(h);
          }
          return null;
        },
        piece: (_h, bytes) => lane!.piece(bytes),
        end: (h, payload) => {
          if (role === null) {
            if (!this.#checkSecret(payload)) throw new ProtocolError('wrong secret');
            role = { kind: 'new' };
            send(status(h.id, null));
            return;
          }
          if (h.type === R.LANE) {
            if (role.kind !== 'new') throw new ProtocolError('LANE on a connection that already has a role');
            const pool = this.#pools.get(h.target);
            if (pool === undefined) throw new ProtocolError(`LANE for pool ${h.target}, which is not open`);
            if (h.arg < 0 || h.arg >= pool.nlanes) throw new ProtocolError(`lane ${h.arg} of a pool with ${pool.nlanes} lanes`);
            role = { kind: 'lane', pool, lane: h.arg };
            s.role = role;
            lane = new Lane(pool, h.arg, send, this.#opts.log, (off, len, deep) => this.#persist(pool, off, len, deep), (stop) => (stop ? s.pause() : s.resume()));
            send(status(h.id, null));
            return;
          }
          if (role.kind !== 'lane') {
            if (role.kind === 'new') role = { kind: 'control' };
            this.control(owner, send, h, payload);
            return;
          }
          lane!.handle(h, payload);
        },
      },
      RPMEM_PROTOCOL,
    );
    const authTimer = setTimeout(() => role === null && close('no AUTH within 10 s'), 10_000);
    s.on('data', (d: Buffer) => {
      try {
        parser.push(d);
      } catch (e) {
        close((e as Error).message);
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(authTimer);
      this.#sockets.delete(s);
      if (role?.kind === 'control') this.closeOwned(owner);
    });
  }

  async #persist(pool: OpenPool, offset: number, length: number, deep: boolean): Promise<string | null> {
    const err = await persistRange(pool, offset, length, deep);
    if (err !== null && pool.poisoned === null && !pool.closed) {
      pool.poisoned = err;
      this.#opts.log(`persist of ${length} bytes at ${offset} of ${pool.setPath} failed (${err}); the pool is poisoned: every later request reports ${err}`);
    }
    return err;
  }
}

type SocketWithRole = Socket & { role?: Role };

/** writev of `bufs` (`length` bytes in all) at `position`, on the thread pool, to the end: null or the errno. */
async function writevAll(fd: number, bufs: Uint8Array[], position: number, length: number): Promise<string | null> {
  let left = bufs;
  let done = 0;
  while (done < length) {
    const n = await new Promise<number | string>((ok) => writev(fd, left as NodeJS.ArrayBufferView[], position + done, (err, bytes) => ok(err !== null ? (err.code ?? 'EIO') : bytes)));
    if (typeof n === 'string') return n;
    if (n === 0) return 'EIO';
    done += n;
    // A short write: skip what went.
    let skip = n;
    const rest: Uint8Array[] = [];
    for (const b of left) {
      if (skip >= b.byteLength) skip -= b.byteLength;
      else {
        rest.push(skip > 0 ? b.subarray(skip) : b);
        skip = 0;
      }
    }
    left = rest;
  }
  return null;
}

function status(id: number, errno: string | null, payload?: Uint8Array): Buffer {
  return RPMEM_PROTOCOL.frame(R.REPLY, { id, arg: errno === null ? 0 : ERRNO[errno] ?? ERRNO.EIO! }, payload);
}

/** Bytes a lane may hold received and not yet applied before its socket stops reading (TCP then pushes back). */
const LANE_HELD_MAX = 16 * 1024 * 1024;

/**
 * One lane of an open pool. A write is received into a staging buffer (on pmem,
 * straight into the mapping), its CRC32C verified, then applied in order on the
 * thread pool while the socket goes on reading: receiving and writing the page
 * cache overlap on two cores. Replies leave in request order.
 */
class Lane {
  /** The pieces of the write being received, and their CRC32C so far. */
  #pieces: Uint8Array[] = [];
  #crc = 0;
  /** Bytes received and not yet applied; past LANE_HELD_MAX the socket stops reading. */
  #held = 0;
  #paused = false;
  /** Writes of this lane, applied one after the other. */
  #applied: Promise<void> = Promise.resolve();
  /** Replies, in request order. */
  #replies: Promise<void> = Promise.resolve();
  /** Ranges written and not yet persisted; bytes since the last writeback kick. */
  #dirty: Array<[number, number]> = [];
  #sinceKick = 0;
  /** A failure to report at the next drain (a write that failed its CRC or its pwrite). */
  #error: string | null = null;
  #direct = false;

  constructor(
    readonly pool: OpenPool,
    readonly index: number,
    private readonly send: (b: Buffer) => void,
    private readonly log: (m: string) => void,
    private readonly persist: (offset: number, length: number, deep: boolean) => Promise<string | null>,
    private readonly pause: (stop: boolean) => void,
  ) {}

  /**
   * Where a WRITE's payload goes (its range checked first): on pmem, straight
   * into the mapping; otherwise streamed: the socket's own chunks are kept
   * (no copy), their CRC32C chained, and only a verified write is applied.
   */
  destination(h: Header): Uint8Array | typeof STREAM {
    const pool = this.pool;
    const n = h.bytes - HEADER_BYTES;
    if (h.offset < pool.dataStart || h.offset + n > pool.size) throw new ProtocolError(`WRITE of ${n} bytes at ${h.offset} is outside the pool's data area [${pool.dataStart}, ${pool.size})`);
    const into = pool.poisoned === null && pool.persistMethod === 'pmem' ? pool.window(h.offset, n) : null;
    this.#direct = into !== null;
    if (into !== null) return into;
    this.#pieces = [];
    this.#crc = 0;
    return STREAM;
  }

  piece(bytes: Uint8Array): void {
    this.#pieces.push(bytes);
    this.#crc = crc32c(bytes, this.#crc);
    this.#held += bytes.byteLength;
    if (this.#held >= LANE_HELD_MAX && !this.#paused) {
      this.#paused = true;
      this.pause(true);
    }
  }

  #release(bytes: number): void {
    this.#held -= bytes;
    if (this.#paused && this.#held < LANE_HELD_MAX / 2) {
      this.#paused = false;
      this.pause(false);
    }
  }

  handle(h: Header, payload: Uint8Array): void {
    switch (h.type) {
      case R.WRITE:
        return this.#write(h, payload);
      case R.DRAIN:
        return this.#drain(h);
      case R.READ:
        return this.#read(h);
      default:
        throw new ProtocolError(`${RPMEM_PROTOCOL.typeName(h.type)} on a lane`);
    }
  }

  #write(h: Header, payload: Uint8Array): void {
    const pool = this.pool;
    const direct = this.#direct;
    const ack = (h.aux & F.ACK) !== 0;
    const deep = (h.aux & F.DEEP) !== 0;
    const pieces = this.#pieces;
    this.#pieces = [];
    const length = direct ? payload.byteLength : h.bytes - HEADER_BYTES;
    const crc = direct ? crc32c(payload) : this.#crc;
    if ((crc >>> 0) !== (h.arg >>> 0)) {
      // Never persisted nor acknowledged. Bytes that landed in the mapping make the pool
      // untrustworthy: it is poisoned; streamed bytes were never applied.
      this.log(`lane ${this.index} of ${pool.setPath}: a ${length}-byte write at ${h.offset} failed its CRC32C${direct ? '; the pool is poisoned' : '; not applied'}`);
      if (direct) pool.poisoned ??= 'EBADMSG';
      else this.#release(length);
      this.#error ??= 'EBADMSG';
      if (ack) this.#replies = this.#replies.then(() => this.send(status(h.id, 'EBADMSG')));
      return;
    }
    const offset = h.offset;
    if (!direct) {
      this.#applied = this.#applied.then(async () => {
        const err = pool.poisoned === null ? await pool.applyAsync(offset, pieces, length) : null;
        this.#release(length);
        if (err !== null && pool.poisoned === null && !pool.closed) {
          pool.poisoned = err;
          this.log(`writing ${length} bytes at ${offset} of ${pool.setPath} failed (${err}); the pool is poisoned`);
        }
        this.#kick(offset, length);
      });
    }
    if (ack) {
      const applied = this.#applied;
      this.#replies = this.#replies.then(async () => {
        await applied;
        this.send(status(h.id, await this.persist(offset, length, deep)));
      });
      return;
    }
    this.#dirty.push([offset, length]);
    if (direct) this.#kick(offset, length);
  }

  /** Starts the disk on what has arrived while the rest streams in; the drain's persist waits for it. */
  #kick(offset: number, length: number): void {
    this.#sinceKick += length;
    if (this.#sinceKick < WRITEBACK_BYTES) return;
    this.#sinceKick = 0;
    this.pool.startWriteback(Math.max(this.pool.dataStart, offset + length - WRITEBACK_BYTES), Math.min(WRITEBACK_BYTES, offset + length - this.pool.dataStart));
  }

  #drain(h: Header): void {
    const ranges = mergeRanges(this.#dirty);
    this.#dirty = [];
    const applied = this.#applied;
    this.#replies = this.#replies.then(async () => {
      await applied;
      let err: string | null = this.#error;
      this.#error = null;
      for (const [off, len] of ranges) err ??= await this.persist(off, len, (h.aux & F.DEEP) !== 0);
      err ??= this.pool.poisoned;
      this.send(status(h.id, err));
    });
  }

  #read(h: Header): void {
    const pool = this.pool;
    if (h.length > MAX_FRAME_PAYLOAD || h.offset < pool.dataStart || h.offset + h.length > pool.size) throw new ProtocolError(`READ of ${h.length} bytes at ${h.offset} is outside the pool's data area`);
    const applied = this.#applied;
    this.#replies = this.#replies.then(async () => {
      await applied;
      if (pool.poisoned !== null || pool.closed) return this.send(status(h.id, pool.poisoned ?? 'EBADF'));
      const out = Buffer.allocUnsafe(HEADER_BYTES + h.length);
      RPMEM_PROTOCOL.writeHeader(out, 0, R.REPLY, h.length, { id: h.id });
      pool.copyOut(h.offset, out.subarray(HEADER_BYTES));
      this.send(out);
    });
  }
}


/** Sorted, overlapping and touching ranges merged. */
function mergeRanges(ranges: Array<[number, number]>): Array<[number, number]> {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [off, len] of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && off <= last[0] + last[1]) last[1] = Math.max(last[1], off + len - last[0]);
    else out.push([off, len]);
  }
  return out;
}

/** rpmemd's configuration files: `key = value` lines; later files override earlier ones. */
export function readConfig(files: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of files) {
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const m = /^\s*([a-z-]+)\s*=\s*(.*?)\s*$/.exec(line.replace(/#.*$/, ''));
      if (m !== null) out[m[1]!] = m[2]!;
    }
  }
  return out;
}

/** A logger to stderr or to a log file, each line stamped. */
export function daemonLogger(file: string | undefined): (message: string) => void {
  return (message) => {
    const line = `mprun-rpmemd[${process.pid}]: ${message}\n`;
    if (file !== undefined) appendFileSync(file, `${new Date().toISOString()} ${line}`);
    else process.stderr.write(line);
  };
}
