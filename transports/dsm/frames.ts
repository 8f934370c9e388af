/**
 * The DSM data-path wire format between ranks and node agents: frames of
 * core/frames.ts (32-byte header, payload). The first frame on a
 * connection must be AUTH with the per-job secret.
 */
import { FrameParser as GenericParser, FrameProtocol, type FrameHandler, type HeaderFields } from '../../core/frames.js';

export { HEADER_BYTES, ProtocolError, type FrameHandler, type Header } from '../../core/frames.js';

export const DSM_VERSION = 1;
/** Largest payload of one frame; larger puts and gets are split by the client. */
export const MAX_PAYLOAD = 16 * 1024 * 1024;

export const DsmFrame = {
  AUTH: 1,
  AUTH_OK: 2,
  /** Remote memory access on a rank's symmetric heap. */
  PUT: 3,
  GET: 4,
  GET_REPLY: 5,
  AMO: 6,
  AMO_REPLY: 7,
  FLUSH: 8,
  FLUSH_REPLY: 9,
  /** A message for a rank of the agent's node (arg: tag, aux: dtype, id: source rank). */
  MSG: 10,
  /** A request failed at the agent: payload is the reason (utf-8). */
  ERROR: 11,
  /** Shared variables and semaphores (transports/dsm/shared.ts). */
  VAR_REGISTER: 12,
  VAR_WRITE: 13,
  VAR_FETCH: 14,
  VAR_PAGES: 15,
  VAR_AMO: 16,
  SEM: 17,
  OK: 18,
} as const;
export type FrameType = (typeof DsmFrame)[keyof typeof DsmFrame];

export const DSM_PROTOCOL = new FrameProtocol('dsm', DSM_VERSION, DsmFrame, MAX_PAYLOAD);

export function typeName(t: number): string {
  return DSM_PROTOCOL.typeName(t);
}

/** Atomic operations (AMO aux low byte: the endpoint interface's codes) and operand widths (aux high byte: 4 or 8). */
export { AtomicOp as AMO } from '../endpoint.js';

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
