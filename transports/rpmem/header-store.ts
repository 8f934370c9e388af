/**
 * The rpmem daemon's pool headers on disk: written and persisted in place in
 * each part that has one, and copied to a backup file beside the part
 * (<part>.hdr; header.ts has why a file of its own), so that open can recover
 * a damaged header from its backup, or a damaged backup from the header.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { native } from '../../native/index.js';
import { backupPathOf, emptyAttr, encodeHeader, type HeaderFix } from './header.js';
import type { MappedPart, OpenPool } from './open-pool.js';
import { partHasHeader, POOL_HDR_SIZE, type PoolSet } from './poolset.js';
import { Refusal } from './refusal.js';

/** Where the daemon logs: failures always, routine events with log-level info. */
export interface DaemonLog {
  log: (message: string) => void;
  info?: (message: string) => void;
}

/** Persists every part's header in place; a failure poisons the pool. */
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
export function writeHeaders(pool: OpenPool): void {
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
export function readBackup(file: string): Uint8Array | null {
  try {
    return new Uint8Array(readFileSync(file));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** Writes the header in `header` (its first 4096 bytes) to a backup file, durably (the file, and its directory when new). */
export function writeBackup(file: string, header: Uint8Array): void {
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
export function removeBackups(set: PoolSet): void {
  set.parts.forEach((p, i) => {
    if (!partHasHeader(set, i)) return;
    try {
      unlinkSync(backupPathOf(p.path));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  });
}

/**
 * Carries out what recoverHeader decided for a part: the damaged copy is
 * rewritten from the good one (the header persisted in place, the backup
 * written and fsynced), the damage logged and added to `repairs`.
 */
export function fixHeader(part: MappedPart, file: string, backup: Uint8Array | null, fix: HeaderFix, repairs: string[], out: DaemonLog): void {
  if (fix.kind === 'none') return;
  const bfile = backupPathOf(file);
  if (fix.kind === 'primary') {
    part.bytes.set(backup!.subarray(0, POOL_HDR_SIZE), 0);
    const err = native().poolPersist(part.buffer, 0, POOL_HDR_SIZE, part.isPmem, false);
    if (err !== null) throw new Refusal(err, `${fix.damage}, and persisting it recovered from ${bfile} failed`);
    const report = `${fix.damage}; recovered from its backup ${bfile}`;
    out.log(report);
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
    out.log(report);
    repairs.push(report);
  } else if (failed !== null) out.log(failed);
  else out.info?.(fix.kind === 'new-backup' ? `made the header backup ${bfile} (the pool had none)` : `the header backup ${bfile} was older than the header (an attribute change was interrupted); rewritten`);
}
