/**
 * Exposable memory: page-aligned ArrayBuffers over a memfd segment of this
 * process, which make() can export for mapping (not only for CMA copies).
 */
import { native } from '../../native/index.js';

let counter = 0;

/** A new zeroed shared ArrayBuffer of `bytes` bytes (rounded up to pages). */
export function allocShared(bytes: number, name = 'mprun-arena'): ArrayBuffer {
  const n = native();
  const page = n.pageSize();
  const size = Math.max(page, Math.ceil(bytes / page) * page);
  const fd = n.memfdCreate(`${name}-${counter++}`, size);
  // The fd stays open: peers reach the segment through /proc/<pid>/fd/<fd>.
  return n.mapFd(fd, 0, size, fd);
}
