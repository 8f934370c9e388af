/**
 * Random bytes from the kernel's generator (/dev/urandom, which node:crypto's
 * randomBytes draws on as well) without loading node:crypto: mprun's own start
 * is on the path of every job's start, and loading node:crypto cost 9 ms of
 * CPU there (README, "Startup"). For job secrets and names.
 */
import { Buffer } from 'node:buffer';
import { closeSync, openSync, readSync } from 'node:fs';

/** `bytes` random bytes as hexadecimal (2 x bytes characters). */
export function randomHex(bytes: number): string {
  const buf = Buffer.allocUnsafe(bytes);
  const fd = openSync('/dev/urandom', 'r');
  try {
    for (let got = 0; got < bytes; ) {
      const n = readSync(fd, buf, got, bytes - got, null);
      if (n <= 0) throw new Error('/dev/urandom returned no bytes');
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  return buf.toString('hex');
}
