/**
 * The rpmem wire protocol, in the frames of core/frames.ts. Modelled on
 * librpmem's rpmem_proto.h: an out-of-band control channel (create, open,
 * close, set_attr, remove) and in-band lanes (persist, read), one TCP
 * connection per lane, ordered within a lane only.
 *
 * Control channel: the daemon's stdin/stdout when started over ssh (it first
 * writes a big-endian int32 status word, then frames), or a TCP connection to
 * a daemon mprun started (AUTH first). Over stdin the client's first frame is
 * AUTH with a fresh secret: every lane must then prove it.
 *
 * Frames and their header fields (target: pool id; aux: flags; arg: CRC32C of
 * the payload on WRITE, the status (an errno number, 0: success) on REPLY):
 *   AUTH     payload: the secret                    -> REPLY {address, port}
 *   CREATE   payload: JSON {poolSet, size, nlanes, attr|null, makeSet?}  -> REPLY {pool, size, nlanes, persist}
 *   OPEN     payload: JSON {poolSet, nlanes}        -> REPLY {pool, size, nlanes, persist, attr|null}
 *   CLOSE    target                                 -> REPLY
 *   SET_ATTR target, payload: JSON attr             -> REPLY
 *   REMOVE   payload: JSON {poolSet, force, poolSetFile} -> REPLY
 *   LIST     payload: JSON {dir}                    -> REPLY {sets: names of the set files under dir}
 *   LANE     target, arg: lane                      -> REPLY   (first frame after AUTH on a lane)
 *   WRITE    offset, payload, arg: CRC32C, aux: WriteFlag.*  (no reply unless WriteFlag.ACK)
 *   DRAIN    aux: WriteFlag.DEEP                    -> REPLY once every WRITE of the lane is persistent
 *   READ     offset, length                         -> REPLY with the bytes
 *
 * The target serves lanes natively (native/lane.cc spells out the same
 * header, types, flags and payload limit: keep the two in step).
 */
import { constants as osConstants } from 'node:os';
import { FrameProtocol } from '../../core/frames.js';

export const RPMEM_VERSION = 1;
/** Largest payload of one frame; the client splits larger persists and reads. */
export const MAX_FRAME_PAYLOAD = 1024 * 1024;

/** The frame types (header byte 5). */
export const RpmemFrame = {
  AUTH: 1,
  CREATE: 2,
  OPEN: 3,
  CLOSE: 4,
  SET_ATTR: 5,
  REMOVE: 6,
  LANE: 7,
  WRITE: 8,
  DRAIN: 9,
  READ: 10,
  REPLY: 11,
  LIST: 12,
} as const;

/** WRITE and DRAIN flags (aux). */
export const WriteFlag = {
  /** Persist this write now and reply (librpmem's persist, vs. flush). */
  ACK: 1,
  /** Persist to the lowest persistency domain (rpmem_deep_persist). */
  DEEP: 2,
  /** No atomicity guarantee needed (RPMEM_PERSIST_RELAXED / RPMEM_FLUSH_RELAXED). */
  RELAXED: 4,
} as const;

export const RPMEM_PROTOCOL = new FrameProtocol('rpmem', RPMEM_VERSION, RpmemFrame, MAX_FRAME_PAYLOAD);

/** librpmem's RPMEM_PM_*: how the target makes data persistent. */
export type PersistMethod = 'pmem' | 'msync';

const ERRNO = osConstants.errno as Record<string, number>;
const ERRNO_NAMES: Record<number, string> = Object.fromEntries(Object.entries(ERRNO).map(([k, v]) => [v, k]));

/** The errno number a status word, exit code or REPLY carries for `name` (`fallback`'s for a name this system lacks). */
export function errnoNumber(name: string, fallback = 'EIO'): number {
  return ERRNO[name] ?? ERRNO[fallback]!;
}

/** The errno name of a number from the wire, or `fallback`. */
export function errnoName(n: number, fallback = 'EREMOTEIO'): string {
  return ERRNO_NAMES[n] ?? fallback;
}
