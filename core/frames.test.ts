import { describe, expect, it } from 'vitest';
import { FrameParser, FrameProtocol, HEADER_BYTES, ProtocolError, type Header } from './frames.js';

const TYPES = { AUTH: 1, PUT: 2, REPLY: 3 } as const;
const P = new FrameProtocol('test', 7, TYPES, 64);

interface Got {
  h: Header;
  payload: Uint8Array;
}

/** A parser that records every frame; `dst` picks a destination for a header (default: a fresh buffer). */
function recorder(dst: (h: Header) => Uint8Array | null = () => null): { parser: FrameParser; got: Got[]; begun: Header[] } {
  const got: Got[] = [];
  const begun: Header[] = [];
  const parser = new FrameParser(
    {
      begin: (h) => {
        begun.push(h);
        return dst(h);
      },
      end: (h, payload) => void got.push({ h, payload: payload.slice() }),
    },
    P,
  );
  return { parser, got, begun };
}

/** A header with raw fields, for what writeHeader would never produce. */
function rawHeader(fields: { bytes?: number; version?: number; type?: number; offsetHigh?: number }): Buffer {
  const b = P.frame(TYPES.PUT, {});
  if (fields.bytes !== undefined) b.writeUInt32LE(fields.bytes, 0);
  if (fields.version !== undefined) b[4] = fields.version;
  if (fields.type !== undefined) b[5] = fields.type;
  if (fields.offsetHigh !== undefined) b.writeUInt32LE(fields.offsetHigh, 20);
  return b;
}

describe('frame headers', () => {
  it('round-trip every field, offsets past 2^32 and negative targets and args included', () => {
    const b = P.frame(TYPES.PUT, { aux: 0xbeef, id: 0xfffffffe, target: -5, offset: 2 ** 52 + 12345, length: 99, arg: -1 }, new Uint8Array([1, 2, 3]));
    expect(b.byteLength).toBe(HEADER_BYTES + 3);
    expect(P.parseHeader(b)).toEqual({ bytes: HEADER_BYTES + 3, type: TYPES.PUT, aux: 0xbeef, id: 0xfffffffe, target: -5, offset: 2 ** 52 + 12345, length: 99, arg: -1 });
  });

  it('default the length to the payload and copy the payload, so the caller may reuse it', () => {
    const src = new Uint8Array([9, 8, 7, 6]);
    const b = P.frame(TYPES.PUT, { offset: 4 }, src);
    src.fill(0);
    expect(P.parseHeader(b).length).toBe(4);
    expect([...b.subarray(HEADER_BYTES)]).toEqual([9, 8, 7, 6]);
  });

  it('refuse another version, an unknown type, a length below the header or past the payload limit, and offsets beyond 2^53', () => {
    expect(() => P.parseHeader(rawHeader({ version: 6 }))).toThrow(new ProtocolError('test frame version 6, expected 7'));
    expect(() => P.parseHeader(rawHeader({ type: 99 }))).toThrow(/unknown test frame type 99/);
    expect(() => P.parseHeader(rawHeader({ bytes: HEADER_BYTES - 1 }))).toThrow(/PUT frame of 31 bytes is out of bounds/);
    expect(() => P.parseHeader(rawHeader({ bytes: 0 }))).toThrow(/out of bounds/);
    expect(P.parseHeader(rawHeader({ bytes: HEADER_BYTES + 64 })).bytes).toBe(HEADER_BYTES + 64);
    expect(() => P.parseHeader(rawHeader({ bytes: HEADER_BYTES + 65 }))).toThrow(/PUT frame of 97 bytes is out of bounds/);
    expect(() => P.parseHeader(rawHeader({ bytes: 0xffffffff }))).toThrow(/out of bounds/);
    expect(P.parseHeader(rawHeader({ offsetHigh: 0x1fffff })).offset).toBe(0x1fffff * 2 ** 32);
    expect(() => P.parseHeader(rawHeader({ offsetHigh: 0x200000 }))).toThrow(/offset beyond 2\^53/);
  });

  it('name types for messages, and say which number an unknown one had', () => {
    expect(P.typeName(TYPES.REPLY)).toBe('REPLY');
    expect(P.typeName(42)).toBe('type 42');
  });
});

describe('FrameParser', () => {
  const stream = Buffer.concat([
    P.frame(TYPES.AUTH, { id: 1 }, Buffer.from('secret')),
    P.frame(TYPES.PUT, { id: 2, offset: 8 }, new Uint8Array(40).map((_, i) => i)),
    P.frame(TYPES.REPLY, { id: 3 }),
  ]);

  it('splits one chunk holding several frames, empty payloads included', () => {
    const { parser, got } = recorder();
    expect(parser.push(stream).byteLength).toBe(0);
    expect(got.map((g) => [g.h.type, g.h.id, g.payload.byteLength])).toEqual([
      [TYPES.AUTH, 1, 6],
      [TYPES.PUT, 2, 40],
      [TYPES.REPLY, 3, 0],
    ]);
    expect(Buffer.from(got[0]!.payload).toString()).toBe('secret');
    expect([...got[1]!.payload]).toEqual([...Array(40).keys()]);
  });

  it('gives the same frames however the stream is cut: headers split at every byte, payloads across chunks', () => {
    const { got: whole } = ((r) => (r.parser.push(stream), r))(recorder());
    for (const step of [1, 2, 3, 5, 31, 32, 33, 47]) {
      const { parser, got } = recorder();
      for (let at = 0; at < stream.byteLength; at += step) parser.push(stream.subarray(at, at + step));
      expect(got).toEqual(whole);
    }
  });

  it('takes a header only when all 32 bytes are in: begin is not called early', () => {
    const { parser, begun } = recorder();
    parser.push(stream.subarray(0, HEADER_BYTES - 1));
    expect(begun).toHaveLength(0);
    parser.push(stream.subarray(HEADER_BYTES - 1, HEADER_BYTES));
    expect(begun).toHaveLength(1);
  });

  it("streams a payload into the handler's destination (no copy after), whatever the chunks", () => {
    const into = new Uint8Array(40);
    const ends: Uint8Array[] = [];
    const parser = new FrameParser({ begin: (h) => (h.type === TYPES.PUT ? into : null), end: (_h, p) => void ends.push(p) }, P);
    for (let at = 0; at < stream.byteLength; at += 7) parser.push(stream.subarray(at, at + 7));
    expect(ends[1]).toBe(into);
    expect([...into]).toEqual([...Array(40).keys()]);
  });

  it('refuses a destination of the wrong size', () => {
    const { parser } = recorder(() => new Uint8Array(3));
    expect(() => parser.push(stream)).toThrow(/internal: AUTH destination of 3 bytes for 6/);
  });

  it('checks a header before a byte of its payload moves: bad version, oversize frame', () => {
    for (const bad of [rawHeader({ version: 1 }), rawHeader({ bytes: HEADER_BYTES + 1000 })]) {
      const { parser, begun, got } = recorder();
      expect(() => parser.push(Buffer.concat([bad, new Uint8Array(1000)]))).toThrow(ProtocolError);
      expect(begun).toHaveLength(0);
      expect(got).toHaveLength(0);
    }
  });

  it("lets the handler refuse a header before its payload is read (the servers' AUTH-first rule)", () => {
    // As the rpmem daemon and the DSM service do: anything but AUTH on a connection that has not proved the secret.
    const serve = (): { parser: FrameParser; landed: number[] } => {
      let authenticated = false;
      const landed: number[] = [];
      const parser = new FrameParser(
        {
          begin: (h) => {
            if (!authenticated && h.type !== TYPES.AUTH) throw new ProtocolError(`${P.typeName(h.type)} before AUTH`);
            return null;
          },
          end: (h, payload) => {
            authenticated ||= h.type === TYPES.AUTH;
            landed.push(payload.byteLength);
          },
        },
        P,
      );
      return { parser, landed };
    };
    const put = P.frame(TYPES.PUT, { offset: 0 }, new Uint8Array(16).fill(0xff));
    const refused = serve();
    expect(() => refused.parser.push(put)).toThrow(new ProtocolError('PUT before AUTH'));
    expect(refused.landed).toEqual([]);
    const accepted = serve();
    accepted.parser.push(Buffer.concat([P.frame(TYPES.AUTH, {}, Buffer.from('secret')), put]));
    expect(accepted.landed).toEqual([6, 16]);
  });

  it('stops after the frame being ended and hands back the rest of the chunk (a connection changing hands)', () => {
    let parser: FrameParser | null = null;
    const seen: number[] = [];
    parser = new FrameParser(
      {
        begin: () => null,
        end: (h) => {
          seen.push(h.id);
          if (h.id === 1) parser!.stop();
        },
      },
      P,
    );
    const rest = parser.push(stream);
    expect(seen).toEqual([1]);
    expect(Buffer.from(rest).equals(stream.subarray(HEADER_BYTES + 6))).toBe(true);
    expect(parser.push(stream).byteLength).toBe(stream.byteLength);
  });
});
