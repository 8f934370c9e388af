/**
 * How the rpmem daemon refuses a request: a Refusal carries the errno name the
 * client gets in its REPLY (librpmem's names: ENOENT, EEXIST, EBUSY, EINVAL,
 * ...) and the reason, which the client shows.
 */
import { MprunError } from '../../core/errors.js';

/** A failure to report to the client: an errno name and why. */
export class Refusal extends Error {
  constructor(
    readonly errno: string,
    message: string,
  ) {
    super(message);
  }
}

/** The errno a failure is reported with: a Refusal's, an MprunError's (EAGAIN, a held lock, as EBUSY), else EREMOTEIO. */
export function errnoOf(e: unknown): string {
  if (e instanceof Refusal) return e.errno;
  if (e instanceof MprunError && e.errno !== undefined) return e.errno === 'EAGAIN' ? 'EBUSY' : e.errno;
  return 'EREMOTEIO';
}
