/**
 * The one error class of mprun. `code` is stable (ERR_MPRUN_...); where the API
 * mirrors XPMEM (and later librpmem), `errno` carries the errno name the C
 * library would have set (EINVAL, EACCES, ENOENT, ...). The native addon throws
 * instances of this same class.
 */
export type MprunErrorCode =
  | 'ERR_MPRUN_ARG'
  | 'ERR_MPRUN_SYSTEM'
  | 'ERR_MPRUN_XPMEM'
  | 'ERR_MPRUN_NATIVE'
  | 'ERR_MPRUN_NOT_INITIALIZED'
  | 'ERR_MPRUN_FINALIZED'
  | 'ERR_MPRUN_HEAP_EXHAUSTED'
  | 'ERR_MPRUN_COLLECTIVE_MISMATCH'
  | 'ERR_MPRUN_ABORTED'
  | 'ERR_MPRUN_PROTOCOL'
  | 'ERR_MPRUN_UNREACHABLE'
  | 'ERR_MPRUN_UNSUPPORTED'
  | 'ERR_MPRUN_TIMEOUT'
  | 'ERR_MPRUN_TRUNCATE'
  | 'ERR_MPRUN_RPMEM'
  | 'ERR_MPRUN_CHECKPOINT'
  | 'ERR_MPRUN_UCX';

export class MprunError extends Error {
  // The optional fields are declared, not defined: an error without them prints
  // no `errno: undefined` lines in a rank's stack dump.
  readonly code: MprunErrorCode;
  /** errno name, for errors of a system call or of an API that mirrors a C library. */
  declare errno?: string;
  /** The system call (or ioctl) that failed. */
  declare syscall?: string;
  /** The rank this error concerns, when there is one. */
  declare rank?: number;

  constructor(code: MprunErrorCode, message: string, extra?: { errno?: string; syscall?: string; rank?: number }) {
    super(message);
    this.name = 'MprunError';
    this.code = code;
    if (extra?.errno !== undefined) this.errno = extra.errno;
    if (extra?.syscall !== undefined) this.syscall = extra.syscall;
    if (extra?.rank !== undefined) this.rank = extra.rank;
  }
}

/** An XPMEM-style failure: `errno` is what libxpmem would have left in errno. */
export function xpmemError(errno: string, message: string): MprunError {
  return new MprunError('ERR_MPRUN_XPMEM', `${message} (${errno})`, { errno });
}

/** A librpmem-style failure: `errno` is what librpmem would have left in errno. */
export function rpmemError(errno: string, message: string): MprunError {
  return new MprunError('ERR_MPRUN_RPMEM', `${message} (${errno})`, { errno });
}

export function isMprunError(e: unknown, code?: MprunErrorCode): e is MprunError {
  return e instanceof MprunError && (code === undefined || e.code === code);
}
