/**
 * The rpmem target daemon (rpmemd's role): serves pools under its pool set
 * directory to clients that reach it over ssh (control on stdin/stdout) or, when
 * mprun started it for a job, over TCP sessions that prove the job's secret.
 * Data lanes are TCP connections that prove the same secret first; once a
 * lane names its pool, a native thread serves it (native/lane.cc).
 *
 * Durability rules (research/rpmem.md): a persist is acknowledged only after
 * pmem_persist / pmem_msync returned success; a failure poisons the pool, and
 * every later request on it reports that error (never a retry that could
 * "succeed" after the kernel dropped the dirty pages). Space is allocated when a
 * pool is created. A malformed or unauthenticated frame closes that connection,
 * logged; the daemon keeps serving.
 */
import { timingSafeEqual } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, isAbsolute, join, normalize, relative, sep } from 'node:path';
import { native } from '../../native/index.js';
import { MprunError } from '../../core/errors.js';
import { FrameParser, ProtocolError, type Header } from '../../core/frames.js';
import { attrFromWire, attrToWire, backupPathOf, encodeHeader, emptyAttr, recoverHeader, type HeaderFix, type PoolAttr, type PoolHeader } from './header.js';
import { errnoName, errnoNumber, RpmemFrame, RPMEM_PROTOCOL, type PersistMethod } from './protocol.js';
import { capacityOf, extentsOf, formatPoolSet, MIN_POOL, parsePoolSet, partHasHeader, POOL_HDR_SIZE, type Extent, type PoolSet } from './poolset.js';

export interface DaemonOptions {
  poolsetDir: string;
  /** Address the lanes listen on. */
  listen: string;
  /** Failures and closed connections: always logged. */
  log: (message: string) => void;
  /** Pools created and removed, requests refused as the API expects (ENOENT, EEXIST, EBUSY): with log-level info. */
  info?: (message: string) => void;
}

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

/** Test hook: MPRUN_RPMEMD_FAIL_PERSIST=N makes the N-th persist of each pool fail with EIO. */
const FAIL_PERSIST_AT = Number(process.env.MPRUN_RPMEMD_FAIL_PERSIST ?? 0);

/** A pool open in this daemon. */
class OpenPool {
  /**
   * Shared with the lane threads (native/lane.cc): [0] the errno that poisoned
   * the pool (its first failed write or persist: every later request reports
   * it), [1] closed, [2] persists so far, [3] the persist to fail (test hook).
   */
  readonly state = new Int32Array(new SharedArrayBuffer(16));
  /** Lane threads running: the parts stay mapped (and their fds open) until they end. */
  inflight = 0;
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
    this.state[3] = FAIL_PERSIST_AT;
  }

  get poisoned(): string | null {
    const e = Atomics.load(this.state, 0);
    return e === 0 ? null : errnoName(e, 'EIO');
  }

  set poisoned(errno: string | null) {
    Atomics.compareExchange(this.state, 0, 0, errno === null ? 0 : errnoNumber(errno));
  }

  get closed(): boolean {
    return Atomics.load(this.state, 1) !== 0;
  }

  close(): void {
    Atomics.store(this.state, 1, 1);
    if (this.inflight === 0) unmapAll(this.parts);
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
    this.inflight++;
    const extents = new Float64Array(this.extents.flatMap((e) => [e.poolOffset, e.part, e.partOffset, e.length]));
    const parts = this.parts.map((p) => ({ buffer: p.buffer, fd: p.fd, isPmem: p.isPmem }));
    native().laneServe(fd, received, parts, extents, this.dataStart, this.size, this.state, this.setPath, lane, (kind, message) => {
      if (kind === 'log') log(message);
      else if (kind === 'refused') refused(message);
      else if (kind === 'end') {
        ended();
        if (--this.inflight === 0 && this.closed) unmapAll(this.parts);
      }
    });
  }
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

/**
 * Writes every header, persists them, then their backups: a crash in between
 * leaves two copies that verify and differ, and open takes the header (the
 * newer one) and rewrites the backup.
 */
function writeHeaders(pool: OpenPool): void {
  pool.parts.forEach((p, i) => {
    if (partHasHeader(pool.set, i)) encodeHeader({ attr: pool.attr ?? emptyAttr(), poolSize: pool.size, part: i, parts: pool.parts.length }, p.bytes.subarray(0, POOL_HDR_SIZE));
  });
  persistHeaders(pool);
  pool.parts.forEach((p, i) => {
    if (!partHasHeader(pool.set, i)) return;
    const file = backupPathOf(pool.set.parts[i]!.path);
    try {
      writeBackup(file, p.bytes);
    } catch (e) {
      throw new Refusal((e as NodeJS.ErrnoException).code ?? 'EIO', `writing the header backup ${file} failed: ${(e as Error).message}`);
    }
  });
}

/** A part's header backup file (header.ts has why a file of its own), or null when there is none. */
function readBackup(file: string): Uint8Array | null {
  try {
    return new Uint8Array(readFileSync(file));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** Writes the header in `header` (its first 4096 bytes) to a backup file, durably (the file, and its directory when new). */
function writeBackup(file: string, header: Uint8Array): void {
  const fresh = !existsSync(file);
  const fd = openSync(file, 'w', 0o600);
  try {
    writeSync(fd, header, 0, POOL_HDR_SIZE, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (fresh) native().fsyncPath(dirname(file));
}

/** Removes the header backups of a set's parts (none there is fine). */
function removeBackups(set: PoolSet): void {
  set.parts.forEach((p, i) => {
    if (!partHasHeader(set, i)) return;
    try {
      unlinkSync(backupPathOf(p.path));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  });
}

/** Maps a part (create: a new file, its space allocated now). */
function mapPart(path: string, size: number, create: boolean): MappedPart {
  const m = native().poolMap(path, size, create);
  return { buffer: m.buffer, bytes: new Uint8Array(m.buffer), isPmem: m.isPmem, via: m.via, fd: m.fd };
}

function unmapAll(parts: MappedPart[]): void {
  for (const p of parts) native().release(p.buffer);
}

/** A connection's role, once it has proved the secret. */
type Role = { kind: 'new' } | { kind: 'control' } | { kind: 'lane'; pool: OpenPool; lane: number; fd: number };

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
      for (const p of set.parts) parts.push(mapPart(p.path, p.size, true));
      for (const d of new Set(set.parts.map((p) => dirname(p.path)))) native().fsyncPath(d);
      const pool = new OpenPool(this.#nextPool++, path, set, parts, size, attr, lockFd, this.#lanes(req.nlanes));
      writeHeaders(pool);
      this.#register(pool, owner);
      this.#opts.info?.(`created pool ${path} (${size} bytes, ${set.parts.length} part(s), ${pool.persistMethod})`);
      return this.#describe(pool);
    } catch (e) {
      unmapAll(parts);
      for (const p of set.parts.slice(0, parts.length + 1)) {
        for (const f of [p.path, backupPathOf(p.path)]) {
          try {
            unlinkSync(f);
          } catch {
            // not made
          }
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
        parts.push(mapPart(p.path, p.size, false));
      }
      let size = capacityOf(set);
      let attr: PoolAttr | null = null;
      // Damage to a header or its backup that this open found and set right: logged, and told to the client.
      const repairs: string[] = [];
      if (set.headers !== 'none') {
        let first: PoolHeader | null = null;
        for (let i = 0; i < parts.length; i++) {
          if (!partHasHeader(set, i)) continue;
          const file = set.parts[i]!.path;
          const backup = readBackup(backupPathOf(file));
          const { header, fix } = recoverHeader(parts[i]!.bytes, backup, i, file);
          this.#fixHeader(parts[i]!, file, backup, fix, repairs);
          if (i === 0) first = header;
        }
        // Part 0 has a header unless NOHDRS.
        if (first === null) throw new Refusal('EINVAL', `${path}: part 0 has no header`);
        if (first.parts !== set.parts.length) throw new Refusal('EINVAL', `${path}: the pool was created with ${first.parts} part(s), the set now lists ${set.parts.length}`);
        size = first.poolSize;
        attr = first.attr;
      }
      const pool = new OpenPool(this.#nextPool++, path, set, parts, size, attr, lockFd, this.#lanes(req.nlanes));
      this.#register(pool, owner);
      return { ...this.#describe(pool), attr: attr === null ? null : attrToWire(attr), repairs };
    } catch (e) {
      unmapAll(parts);
      native().closeFd(lockFd);
      throw e;
    }
  }

  /**
   * Carries out what recoverHeader decided for a part: the damaged copy is
   * rewritten from the good one (the header persisted in place, the backup
   * written and fsynced), the damage logged and added to `repairs`.
   */
  #fixHeader(part: MappedPart, file: string, backup: Uint8Array | null, fix: HeaderFix, repairs: string[]): void {
    if (fix.kind === 'none') return;
    const bfile = backupPathOf(file);
    if (fix.kind === 'primary') {
      part.bytes.set(backup!.subarray(0, POOL_HDR_SIZE), 0);
      const err = native().poolPersist(part.buffer, 0, POOL_HDR_SIZE, part.isPmem, false);
      if (err !== null) throw new Refusal(err, `${fix.damage}, and persisting it recovered from ${bfile} failed`);
      const report = `${fix.damage}; recovered from its backup ${bfile}`;
      this.#opts.log(report);
      repairs.push(report);
      return;
    }
    let failed: string | null = null;
    try {
      writeBackup(bfile, part.bytes);
    } catch (e) {
      // The pool opens from its good header; the backup is written again at the next open.
      failed = `writing the header backup ${bfile} failed: ${(e as Error).message}`;
    }
    if (fix.kind === 'backup') {
      const report = `${fix.damage}; ${failed ?? `rewritten from the header of ${file}`}`;
      this.#opts.log(report);
      repairs.push(report);
    } else if (failed !== null) this.#opts.log(failed);
    else this.#opts.info?.(fix.kind === 'new-backup' ? `made the header backup ${bfile} (the pool had none)` : `the header backup ${bfile} was older than the header (an attribute change was interrupted); rewritten`);
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
    pool.close();
    // Lane threads see the pool closed; shutting their sockets wakes those blocked in recv.
    for (const s of this.#sockets) {
      const role = (s as SocketWithRole).role;
      if (role?.kind === 'lane' && role.pool === pool) native().laneStop(role.fd);
    }
    native().closeFd(pool.lockFd);
  }

  remove(req: Record<string, unknown>): void {
    const path = this.#setPath(req.poolSet);
    const set = this.#readSet(path);
    const lockFd = this.#lock(path);
    try {
      if (req.force !== true && set.headers !== 'none') {
        // Without force, only a pool: a header or its backup must verify.
        set.parts.forEach((p, i) => {
          if (!partHasHeader(set, i)) return;
          if (!existsSync(p.path)) throw new Refusal('ENOENT', `pool part ${p.path} does not exist (use force)`);
          const part = mapPart(p.path, p.size, false);
          try {
            recoverHeader(part.bytes, readBackup(backupPathOf(p.path)), i, p.path);
          } finally {
            unmapAll([part]);
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
      removeBackups(set);
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
    // Pools first: their lane threads are woken (shutdown) and close their sockets when done.
    for (const [id, owner] of [...this.#owners]) this.closePool(id, owner);
    for (const s of this.#sockets) if ((s as SocketWithRole).role?.kind !== 'lane') s.destroy();
  }

  /** Serves one control channel (stdin/stdout, or an authenticated TCP session). */
  control(owner: object, reply: (frame: Buffer) => void, h: Header, payload: Uint8Array): void {
    const ok = (body?: unknown): void => reply(RPMEM_PROTOCOL.frame(RpmemFrame.REPLY, { id: h.id }, body === undefined ? undefined : Buffer.from(JSON.stringify(body))));
    const fail = (e: unknown): void => {
      const errno = errnoOf(e);
      // The client adds the errno name (rpmemError): not twice.
      const message = (e as Error).message.replace(new RegExp(` \\(${errno}\\)$`), '');
      const expected = errno === 'ENOENT' || errno === 'EEXIST' || errno === 'EBUSY';
      (expected ? this.#opts.info : this.#opts.log)?.(`${RPMEM_PROTOCOL.typeName(h.type)} refused: ${message}`);
      reply(status(h.id, errno, Buffer.from(JSON.stringify({ errno, message })), 'EREMOTEIO'));
    };
    try {
      const body = payload.byteLength > 0 && h.type !== RpmemFrame.AUTH ? (JSON.parse(Buffer.from(payload).toString('utf8')) as Record<string, unknown>) : {};
      if (typeof body !== 'object' || body === null) throw new ProtocolError('control body is not an object');
      switch (h.type) {
        case RpmemFrame.CREATE:
          return ok(this.create(body, owner));
        case RpmemFrame.OPEN:
          return ok(this.open(body, owner));
        case RpmemFrame.CLOSE:
          this.closePool(h.target, owner);
          return ok();
        case RpmemFrame.SET_ATTR:
          this.setAttr(h.target, body, owner);
          return ok();
        case RpmemFrame.REMOVE:
          this.remove(body);
          return ok();
        case RpmemFrame.LIST:
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
          if (role === null && h.type !== RpmemFrame.AUTH) throw new ProtocolError(`${RPMEM_PROTOCOL.typeName(h.type)} before AUTH`);
          return null;
        },
        end: (h, payload) => {
          if (role === null) {
            if (!this.#checkSecret(payload)) throw new ProtocolError('wrong secret');
            role = { kind: 'new' };
            send(status(h.id, null));
            return;
          }
          if (h.type === RpmemFrame.LANE) {
            if (role.kind !== 'new') throw new ProtocolError('LANE on a connection that already has a role');
            const pool = this.#pools.get(h.target);
            if (pool === undefined) throw new ProtocolError(`LANE for pool ${h.target}, which is not open`);
            if (h.arg < 0 || h.arg >= pool.nlanes) throw new ProtocolError(`lane ${h.arg} of a pool with ${pool.nlanes} lanes`);
            // From here the lane's thread owns the socket: Node stops reading it.
            const handle = (s as unknown as { _handle?: { fd?: number; readStop?: () => number } })._handle;
            if (handle?.fd === undefined || handle.fd < 0 || handle.readStop === undefined) throw new ProtocolError('internal: the lane socket has no descriptor');
            s.pause();
            handle.readStop();
            role = { kind: 'lane', pool, lane: h.arg, fd: handle.fd };
            s.role = role;
            send(status(h.id, null));
            parser.stop(); // what follows LANE in this chunk goes to the lane's thread
            return;
          }
          if (role.kind === 'lane') throw new ProtocolError(`${RPMEM_PROTOCOL.typeName(h.type)} after the lane started`);
          if (role.kind === 'new') role = { kind: 'control' };
          this.control(owner, send, h, payload);
        },
      },
      RPMEM_PROTOCOL,
    );
    let laneStarted = false;
    const authTimer = setTimeout(() => role === null && close('no AUTH within 10 s'), 10_000);
    s.on('data', (d: Buffer) => {
      try {
        const rest = parser.push(d);
        if (role?.kind === 'lane' && !laneStarted) {
          laneStarted = true;
          const r = role;
          r.pool.serveLane(r.fd, r.lane, rest, this.#opts.log, (why) => this.#opts.log(`closed a connection from ${peer}: ${why}`), () => s.destroy());
        }
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
}

type SocketWithRole = Socket & { role?: Role };

/** A REPLY: status 0, or the errno of `errno` (`fallback`'s when unknown here), with an optional body. */
function status(id: number, errno: string | null, body?: Uint8Array, fallback = 'EIO'): Buffer {
  return RPMEM_PROTOCOL.frame(RpmemFrame.REPLY, { id, arg: errno === null ? 0 : errnoNumber(errno, fallback) }, body);
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
