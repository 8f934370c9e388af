import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameError, FrameReader, MAX_FRAME, parseTcpAddress, secretMatches } from './wire.js';

describe('control wire format', () => {
  it('reassembles frames split at any byte', () => {
    const bytes = Buffer.concat([encodeFrame({ t: 'a', n: 1 }), encodeFrame({ t: 'b', list: [1, 2, 3] })]);
    for (let cut = 1; cut < bytes.length; cut++) {
      const r = new FrameReader();
      const frames = [...r.push(bytes.subarray(0, cut)), ...r.push(bytes.subarray(cut))];
      expect(frames).toEqual([{ t: 'a', n: 1 }, { t: 'b', list: [1, 2, 3] }]);
    }
  });

  it('rejects oversized, empty, undecodable and untyped frames', () => {
    const len = (n: number): Buffer => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(n);
      return b;
    };
    expect(() => new FrameReader().push(len(MAX_FRAME + 1))).toThrow(FrameError);
    expect(() => new FrameReader().push(len(0))).toThrow(FrameError);
    expect(() => new FrameReader().push(Buffer.concat([len(1), Buffer.from([0xc1])]))).toThrow(FrameError);
    expect(() => new FrameReader().push(Buffer.concat([len(1), Buffer.from([0x01])]))).toThrow(/without a type/);
  });

  it('tells TCP addresses from Unix socket paths', () => {
    expect(parseTcpAddress('10.1.2.254:4000')).toEqual({ host: '10.1.2.254', port: 4000 });
    expect(parseTcpAddress('[fd00::1]:22')).toEqual({ host: 'fd00::1', port: 22 });
    expect(parseTcpAddress('/tmp/mprun-x/control.sock')).toBeNull();
    expect(parseTcpAddress('node1:0')).toBeNull();
    expect(parseTcpAddress(':4000')).toBeNull();
  });

  it('compares secrets in constant time and only strings', () => {
    expect(secretMatches('abc', 'abc')).toBe(true);
    expect(secretMatches('abc', 'abd')).toBe(false);
    expect(secretMatches('abc', 'ab')).toBe(false);
    expect(secretMatches('abc', 123)).toBe(false);
  });
});
