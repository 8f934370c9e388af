/**
 * The rpmem daemon's pools: the pool set files under its pool set directory
 * (names that leave it are refused), and the pools open in it, each owned by
 * the control session that opened it. Create allocates a pool's space at once
 * (a full disk fails here, not as SIGBUS in a persist) and writes its headers;
 * open recovers a damaged header or backup (header-store.ts); a pool set is
 * locked while open (EBUSY to anyone else); remove deletes parts, backups and,
 * if asked, the set file, and fsyncs the directories.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize, relative, sep } from 'node:path';
import { MprunError } from '../../core/errors.js';
import { native } from '../../native/index.js';
import { attrFromWire, attrToWire, backupPathOf, recoverHeader, type PoolAttr, type PoolHeader } from './header.js';
import { fixHeader, readBackup, removeBackups, writeHeaders, type DaemonLog } from './header-store.js';
import { mapPart, OpenPool, unmapAll, type MappedPart } from './open-pool.js';
import { capacityOf, formatPoolSet, MIN_POOL, parsePoolSet, partHasHeader, POOL_HDR_SIZE, type PoolSet } from './poolset.js';
import { Refusal } from './refusal.js';

export interface RegistryOptions extends DaemonLog {
  poolsetDir: string;
}

export class PoolRegistry {
  readonly #opts: RegistryOptions;
  readonly #pools = new Map<number, OpenPool>();
  readonly #owners = new Map<number, object>();
  #nextPool = 1;

  constructor(opts: RegistryOptions) {
    this.#opts = opts;
  }

  /** An open pool by id, whoever owns it (a lane names its pool so). */
  get(id: number): OpenPool | undefined {
    return this.#pools.get(id);
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

  /** CREATE: makes the pool `req` describes (and with makeSet, its one-part set file), opens it for `owner`, and describes it. */
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

  /** OPEN: opens an existing pool for `owner`, recovering a damaged header or backup (the repairs go back to the client). */
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
        // Repairs are written only once the pool is known to open: a refused one is left as it was.
        const fixes: Array<() => void> = [];
        for (let i = 0; i < parts.length; i++) {
          if (!partHasHeader(set, i)) continue;
          const file = set.parts[i]!.path;
          const backup = readBackup(backupPathOf(file));
          const { header, fix } = recoverHeader(parts[i]!.bytes, backup, i, file);
          fixes.push(() => fixHeader(parts[i]!, file, backup, fix, repairs, this.#opts));
          if (i === 0) first = header;
        }
        // Part 0 has a header unless NOHDRS.
        if (first === null) throw new Refusal('EINVAL', `${path}: part 0 has no header`);
        if (first.parts !== set.parts.length) throw new Refusal('EINVAL', `${path}: the pool was created with ${first.parts} part(s), the set now lists ${set.parts.length}`);
        // A set edited, and its parts cut to match, since the pool was made: its header's size
        // would let writes and reads past the parts' ends.
        if (first.poolSize > size) throw new Refusal('EINVAL', `${path}: the pool header says ${first.poolSize} bytes, the set's parts hold ${size}`);
        size = first.poolSize;
        attr = first.attr;
        for (const fix of fixes) fix();
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

  /** SET_ATTR: rewrites the pool's headers and their backups with new attributes. */
  setAttr(id: number, wire: unknown, owner: object): void {
    const pool = this.#pool(id, owner);
    if (pool.poisoned !== null) throw new Refusal(pool.poisoned, `pool ${pool.setPath} failed an earlier persist`);
    if (pool.set.headers === 'none') throw new Refusal('EINVAL', `pool ${pool.setPath} has no header (NOHDRS)`);
    pool.attr = attrFromWire(wire);
    writeHeaders(pool);
  }

  /** CLOSE: the pool stays on disk; its lanes end and its lock is released. */
  closePool(id: number, owner: object): void {
    const pool = this.#pool(id, owner);
    this.#pools.delete(id);
    this.#owners.delete(id);
    pool.close();
    native().closeFd(pool.lockFd);
  }

  /** REMOVE (and `mprun-rpmemd --remove`): deletes a pool's parts and backups, with poolSetFile its set file. */
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

  /** Closes every open pool (the daemon stops). */
  closeAll(): void {
    for (const [id, owner] of [...this.#owners]) this.closePool(id, owner);
  }
}
