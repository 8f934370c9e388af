/**
 * The job's private folder (`$TMPDIR/mprun-XXXXXX`: sockets, the compiled
 * app). mprun removes it on every path it lives through; a SIGKILLed or
 * crashed mprun cannot, so each folder names its owner in a file (pid, the
 * process's start time, its pid namespace) and the next mprun removes the
 * folders of this user whose owner is gone. A folder without that file, of
 * another user, or of a live owner (or one in another pid namespace, which
 * cannot be judged from here) is left alone.
 */
import { chmodSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const OWNER_FILE = 'mprun-owner';
const PREFIX = 'mprun-';

/** A process's start time in clock ticks since boot (/proc/PID/stat field 22), or null. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function pidNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return '';
  }
}

interface Owner {
  pid: number;
  start: string;
  ns: string;
}

function ownerLine(): string {
  return `${process.pid} ${startTime(process.pid) ?? '-'} ${pidNamespace()}\n`;
}

function readOwner(dir: string): Owner | null {
  try {
    const [pid, start, ns] = readFileSync(join(dir, OWNER_FILE), 'utf8').trim().split(' ');
    const n = Number(pid);
    return Number.isInteger(n) && n > 0 ? { pid: n, start: start ?? '-', ns: ns ?? '' } : null;
  } catch {
    return null;
  }
}

/** Whether the owner is certainly gone: no such process, or the pid now belongs to a later one. */
function ownerGone(o: Owner): boolean {
  if (o.ns !== pidNamespace()) return false;
  try {
    process.kill(o.pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
  const now = startTime(o.pid);
  return o.start !== '-' && now !== null && now !== o.start;
}

/** Removes this user's mprun folders in `base` whose owner is gone; returns their paths. */
export function sweepStaleDirs(base = tmpdir()): string[] {
  const uid = process.getuid?.();
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(base).filter((n) => n.startsWith(PREFIX));
  } catch {
    return removed;
  }
  for (const name of names) {
    const dir = join(base, name);
    try {
      const st = lstatSync(dir);
      if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
      const owner = readOwner(dir);
      if (owner === null || !ownerGone(owner)) continue;
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // gone meanwhile, or not ours to judge
    }
  }
  return removed;
}

/**
 * Removes a job's private folder, its owner file last: a remover killed midway
 * (an agent SIGKILLed as a Slurm step ends) leaves a folder that still names
 * its dead owner, which the next mprun sweeps; removed first, as rmSync's
 * directory order may have it, nothing would ever remove the rest.
 */
export function removeJobDir(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return; // gone already
  }
  for (const name of names) if (name !== OWNER_FILE) rmSync(join(dir, name), { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
}

/** Makes the job's private folder (mode 0700), naming this process its owner, after sweeping dead owners' folders. */
export function makeJobDir(base = tmpdir()): string {
  sweepStaleDirs(base);
  const dir = mkdtempSync(join(base, PREFIX));
  chmodSync(dir, 0o700);
  writeFileSync(join(dir, OWNER_FILE), ownerLine(), { mode: 0o600 });
  return dir;
}
