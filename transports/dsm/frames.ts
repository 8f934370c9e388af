/**
 * The DSM data-path wire format between ranks and node agents: binary frames
 * of a 32-byte header and a payload. Every frame carries the version; the
 * first frame on a connection must be AUTH with the per-job secret. A frame's
 * lengths and offsets are checked before a byte of its payload moves: the
 * receiver names the payload's destination when the header arrives (a put
 * lands straight in the target heap, a get reply straight in the caller's
 * array), so large transfers cost no extra copy.
 *
 * Header (little-endian):
 *   +0  u32 frame bytes (header + payload)    +4  u8 version   +5 u8 type   +6 u16 aux
 *   +8  u32 request id                         +12 i32 target (a world rank, or a variable id)
 *   +16 u32 offset low   +20 u32 offset high   +24 u32 length   +28 i32 arg
 */
export const DSM_VERSION = 1;
export const HEADER_BYTES = 32;
/** Largest payload of one frame; larger puts and gets are split by the client. */
export const MAX_PAYLOAD = 16 * 1024 * 1024;

export const T = {
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
export type FrameType = (typeof T)[keyof typeof T];
const TYPE_NAMES = Object.fromEntries(Object.entries(T).map(([k, v]) => [v, k])) as Record<number, string>;

export function typeName(t: number): string {
  return TYPE_NAMES[t] ?? `type ${t}`;
}

/** Atomic operations (AMO aux low byte) and operand widths (aux high byte: 4 or 8). */
export const AMO = { FETCH_ADD: 1, COMPARE_SWAP: 2, SWAP: 3, FETCH: 4, SET: 5 } as const;

export interface Header {
  bytes: number;
  type: number;
  aux: number;
  id: number;
  target: number;
  offset: number;
  length: number;
  arg: number;
}

export class ProtocolError extends Error {}

/** Writes a header into `out` at `at`. */
export function writeHeader(out: Buffer, at: number, type: number, payloadBytes: number, h: Partial<Omit<Header, 'bytes' | 'type'>>): void {
  const offset = h.offset ?? 0;
  out.writeUInt32LE(HEADER_BYTES + payloadBytes, at);
  out[at + 4] = DSM_VERSION;
  out[at + 5] = type;
  out.writeUInt16LE(h.aux ?? 0, at + 6);
  out.writeUInt32LE((h.id ?? 0) >>> 0, at + 8);
  out.writeInt32LE(h.target ?? 0, at + 12);
  out.writeUInt32LE(offset % 0x100000000, at + 16);
  out.writeUInt32LE(Math.floor(offset / 0x100000000), at + 20);
  out.writeUInt32LE(h.length ?? payloadBytes, at + 24);
  out.writeInt32LE(h.arg ?? 0, at + 28);
}

/** A whole frame: header and a copy of `payload` (so the caller may reuse it at once). */
export function frame(type: number, h: Partial<Omit<Header, 'bytes' | 'type'>>, payload?: Uint8Array): Buffer {
  const n = payload?.byteLength ?? 0;
  const out = Buffer.allocUnsafe(HEADER_BYTES + n);
  writeHeader(out, 0, type, n, h);
  if (n > 0) out.set(payload!, HEADER_BYTES);
  return out;
}

/** What a connection's owner does with frames. */
export interface FrameHandler {
  /**
   * A header arrived: validate it (throw ProtocolError to close the
   * connection) and return where its payload goes, exactly h.bytes - 32
   * bytes long (null: a fresh buffer).
   */
  begin(h: Header): Uint8Array | null;
  /** The frame's payload is complete, in `payload`. */
  end(h: Header, payload: Uint8Array): void;
}

const EMPTY = new Uint8Array(0);

/** Splits a byte stream into frames, streaming each payload to where its handler says. */
export class FrameParser {
  readonly #handler: FrameHandler;
  readonly #head = Buffer.alloc(HEADER_BYTES);
  #headFill = 0;
  #h: Header | null = null;
  #dst: Uint8Array = EMPTY;
  #fill = 0;

  constructor(handler: FrameHandler) {
    this.#handler = handler;
  }

  /** Consumes a chunk; throws ProtocolError on malformed input. */
  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.byteLength) {
      if (this.#h === null) {
        const n = Math.min(HEADER_BYTES - this.#headFill, chunk.byteLength - at);
        this.#head.set(chunk.subarray(at, at + n), this.#headFill);
        this.#headFill += n;
        at += n;
        if (this.#headFill < HEADER_BYTES) return;
        this.#headFill = 0;
        const h = parseHeader(this.#head);
        const dst = this.#handler.begin(h);
        const payload = h.bytes - HEADER_BYTES;
        if (dst !== null && dst.byteLength !== payload) throw new ProtocolError(`internal: ${typeName(h.type)} destination of ${dst.byteLength} bytes for ${payload}`);
        this.#dst = dst ?? (payload === 0 ? EMPTY : new Uint8Array(payload));
        this.#fill = 0;
        this.#h = h;
      }
      const want = this.#dst.byteLength - this.#fill;
      const n = Math.min(want, chunk.byteLength - at);
      if (n > 0) {
        this.#dst.set(chunk.subarray(at, at + n), this.#fill);
        this.#fill += n;
        at += n;
      }
      if (this.#fill === this.#dst.byteLength) {
        const h = this.#h;
        const dst = this.#dst;
        this.#h = null;
        this.#dst = EMPTY;
        this.#handler.end(h, dst);
      }
    }
  }
}

function parseHeader(b: Buffer): Header {
  const bytes = b.readUInt32LE(0);
  const version = b[4]!;
  if (version !== DSM_VERSION) throw new ProtocolError(`frame version ${version}, expected ${DSM_VERSION}`);
  const type = b[5]!;
  if (TYPE_NAMES[type] === undefined) throw new ProtocolError(`unknown frame type ${type}`);
  if (bytes < HEADER_BYTES || bytes - HEADER_BYTES > MAX_PAYLOAD) throw new ProtocolError(`${typeName(type)} frame of ${bytes} bytes is out of bounds`);
  const hi = b.readUInt32LE(20);
  if (hi >= 0x200000) throw new ProtocolError(`${typeName(type)} offset beyond 2^53`);
  return {
    bytes,
    type,
    aux: b.readUInt16LE(6),
    id: b.readUInt32LE(8),
    target: b.readInt32LE(12),
    offset: hi * 0x100000000 + b.readUInt32LE(16),
    length: b.readUInt32LE(24),
    arg: b.readInt32LE(28),
  };
}
