/**
 * The DSM data-path wire format between ranks and node agents: frames of
 * core/frames.ts (32-byte header, payload). The first frame on a
 * connection must be AUTH with the per-job secret.
 *
 * A malformed frame (bad version, type, length, or a payload its type does
 * not allow) closes the connection. A well-formed request the agent cannot
 * serve (a rank not on its node, a range outside a heap, a page homed
 * elsewhere, an unknown semaphore) is answered with ERROR when the request
 * has a reply; PUT and MSG have none, so those close the connection too.
 */
import { FrameParser as GenericParser, FrameProtocol, type FrameHandler, type HeaderFields } from '../../core/frames.js';

export { HEADER_BYTES, MAX_AUTH_PAYLOAD, ProtocolError, type FrameHandler, type Header } from '../../core/frames.js';

export const DSM_VERSION = 2;
/** Largest payload of one frame; larger puts, gets and messages are split by the client. */
export const MAX_PAYLOAD = 16 * 1024 * 1024;

export const DsmFrame = {
  AUTH: 1,
  AUTH_OK: 2,
  /** Remote memory access on a rank's symmetric heap (target: world rank, offset: byte offset; GET length: bytes). */
  PUT: 3,
  GET: 4,
  GET_REPLY: 5,
  /** aux: the operation (low byte, AtomicOp) | the element's dtype code << 8; payload: two 8-byte operands. */
  AMO: 6,
  AMO_REPLY: 7,
  FLUSH: 8,
  FLUSH_REPLY: 9,
  /** A message for a rank of the agent's node (arg: tag, aux: dtype, id: source rank). */
  MSG: 10,
  /** The reply to a request the agent cannot serve (RequestRefused): payload is the reason (utf-8). */
  ERROR: 11,
  /** Shared variables (target: the variable's id; payloads: page-wire.ts). */
  VAR_REGISTER: 12,
  VAR_WRITE: 13,
  VAR_FETCH: 14,
  VAR_PAGES: 15,
  /** As AMO, on the variable's home copy (offset: byte offset in the variable). */
  VAR_AMO: 16,
  /** A semaphore operation (aux: SemOp; arg: the initial count of CREATE; payload: the name, utf-8). */
  SEM: 17,
  OK: 18,
  /**
   * A message larger than one frame: MSG_START (the MSG header, offset: the
   * message's bytes) carries its first piece, MSG_PARTs (offset: the piece's
   * place) the rest, back to back on the connection; the last piece delivers it.
   */
  MSG_START: 19,
  MSG_PART: 20,
} as const;
export type FrameType = (typeof DsmFrame)[keyof typeof DsmFrame];

export const DSM_PROTOCOL = new FrameProtocol('dsm', DSM_VERSION, DsmFrame, MAX_PAYLOAD);

export function typeName(t: number): string {
  return DSM_PROTOCOL.typeName(t);
}

/** Atomic operations: the low byte of an AMO's aux (its high byte is the element's dtype code). */
export { AtomicOp as AMO } from '../endpoint.js';

/** Semaphore operations: a SEM frame's aux. */
export const SemOp = {
  CREATE: 1,
  WAIT: 2,
  POST: 3,
} as const;

/**
 * A well-formed request the agent cannot serve: answered with an ERROR frame
 * carrying the message (a frame without a reply closes the connection
 * instead). Malformed frames are ProtocolErrors.
 */
export class RequestRefused extends Error {}

/** Writes a DSM header into `out` at `at`. */
export function writeHeader(out: Buffer, at: number, type: number, payloadBytes: number, h: HeaderFields): void {
  DSM_PROTOCOL.writeHeader(out, at, type, payloadBytes, h);
}

/** A whole DSM frame: header and a copy of `payload`. */
export function frame(type: number, h: HeaderFields, payload?: Uint8Array): Buffer {
  return DSM_PROTOCOL.frame(type, h, payload);
}

/** Splits a byte stream into DSM frames. */
export class FrameParser extends GenericParser {
  constructor(handler: FrameHandler) {
    super(handler, DSM_PROTOCOL);
  }
}
