/**
 * The binary frame format shared by mprun's network protocols (the DSM data
 * path between ranks and node agents, and the rpmem lanes and control
 * sessions): a 32-byte header and a payload. Every frame carries its
 * protocol's version; the first frame on a connection proves the per-job
 * secret. A frame's lengths and offsets are checked before a byte of its
 * payload moves: the receiver names the payload's destination when the header
 * arrives (a put lands straight in the target memory), so large transfers cost
 * no extra copy.
 *
 * Header (little-endian):
 *   +0  u32 frame bytes (header + payload)    +4  u8 version   +5 u8 type   +6 u16 aux
 *   +8  u32 request id                         +12 i32 target (a world rank, a variable or a pool)
 *   +16 u32 offset low   +20 u32 offset high   +24 u32 length   +28 i32 arg
 */
export const HEADER_BYTES = 32;
/** The largest AUTH payload a server takes: nothing bigger is read before the secret is checked. */
export const MAX_AUTH_PAYLOAD = 1024;

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

export type HeaderFields = Partial<Omit<Header, 'bytes' | 'type'>>;

export class ProtocolError extends Error {}

/** One protocol spoken in these frames: its version, frame types and largest payload. */
export class FrameProtocol {
  readonly #names: Record<number, string>;

  constructor(
    readonly name: string,
    readonly version: number,
    types: Record<string, number>,
    readonly maxPayload: number,
  ) {
    this.#names = Object.fromEntries(Object.entries(types).map(([k, v]) => [v, k]));
  }

  typeName(t: number): string {
    return this.#names[t] ?? `type ${t}`;
  }

  /** Writes a header into `out` at `at`. */
  writeHeader(out: Buffer, at: number, type: number, payloadBytes: number, h: HeaderFields): void {
    const offset = h.offset ?? 0;
    out.writeUInt32LE(HEADER_BYTES + payloadBytes, at);
    out[at + 4] = this.version;
    out[at + 5] = type;
    out.writeUInt16LE(h.aux ?? 0, at + 6);
    out.writeUInt32LE((h.id ?? 0) >>> 0, at + 8);
    out.writeInt32LE(h.target ?? 0, at + 12);
    out.writeUInt32LE(offset % 0x100000000, at + 16);
    out.writeUInt32LE(Math.floor(offset / 0x100000000), at + 20);
    out.writeUInt32LE((h.length ?? payloadBytes) >>> 0, at + 24);
    out.writeInt32LE((h.arg ?? 0) | 0, at + 28);
  }

  /** A whole frame: header and a copy of `payload` (so the caller may reuse it at once). */
  frame(type: number, h: HeaderFields, payload?: Uint8Array): Buffer {
    const n = payload?.byteLength ?? 0;
    const out = Buffer.allocUnsafe(HEADER_BYTES + n);
    this.writeHeader(out, 0, type, n, h);
    if (n > 0) out.set(payload!, HEADER_BYTES);
    return out;
  }

  /** Decodes and checks a header; throws ProtocolError on anything malformed. */
  parseHeader(b: Buffer): Header {
    const bytes = b.readUInt32LE(0);
    const version = b[4]!;
    if (version !== this.version) throw new ProtocolError(`${this.name} frame version ${version}, expected ${this.version}`);
    const type = b[5]!;
    if (this.#names[type] === undefined) throw new ProtocolError(`unknown ${this.name} frame type ${type}`);
    if (bytes < HEADER_BYTES || bytes - HEADER_BYTES > this.maxPayload) throw new ProtocolError(`${this.typeName(type)} frame of ${bytes} bytes is out of bounds`);
    const hi = b.readUInt32LE(20);
    if (hi >= 0x200000) throw new ProtocolError(`${this.typeName(type)} offset beyond 2^53`);
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
  readonly #protocol: FrameProtocol;
  readonly #head = Buffer.alloc(HEADER_BYTES);
  #headFill = 0;
  #h: Header | null = null;
  #dst: Uint8Array = EMPTY;
  #fill = 0;
  #stopped = false;

  constructor(handler: FrameHandler, protocol: FrameProtocol) {
    this.#handler = handler;
    this.#protocol = protocol;
  }

  /**
   * Stops after the frame being ended (called from end()): the connection
   * changes hands, and push() returns the bytes it did not consume.
   */
  stop(): void {
    this.#stopped = true;
  }

  /** Consumes a chunk; throws ProtocolError on malformed input. After stop(), returns the rest of the chunk. */
  push(chunk: Uint8Array): Uint8Array {
    let at = 0;
    while (at < chunk.byteLength && !this.#stopped) {
      if (this.#h === null) {
        const n = Math.min(HEADER_BYTES - this.#headFill, chunk.byteLength - at);
        this.#head.set(chunk.subarray(at, at + n), this.#headFill);
        this.#headFill += n;
        at += n;
        if (this.#headFill < HEADER_BYTES) return EMPTY;
        this.#headFill = 0;
        const h = this.#protocol.parseHeader(this.#head);
        const dst = this.#handler.begin(h);
        const payload = h.bytes - HEADER_BYTES;
        if (dst !== null && dst.byteLength !== payload) throw new ProtocolError(`internal: ${this.#protocol.typeName(h.type)} destination of ${dst.byteLength} bytes for ${payload}`);
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
    return chunk.subarray(at);
  }
}
