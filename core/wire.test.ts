import { createServer, connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameError, FrameReader, MAX_AUTH_FRAME, MAX_FRAME, parseTcpAddress, secretMatches, serveConnection, WIRE_VERSION } from './wire.js';

const len = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

/** A server of serveConnection on loopback; `client` writes to it; resolves with what was rejected, in order. */
async function serve(client: (s: Socket) => void, authTimeoutMs?: number): Promise<{ rejected: string[]; frames: string[] }> {
  const rejected: string[] = [];
  const frames: string[] = [];
  const server = createServer((s) => serveConnection(s, 'the-secret', () => undefined, (f) => frames.push(f.t), (why) => rejected.push(why), authTimeoutMs));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => {
    const s = connect(port, '127.0.0.1', () => client(s));
    s.on('error', () => undefined);
    s.on('close', () => resolve());
  });
  server.close();
  return { rejected, frames };
}

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
    expect(() => new FrameReader().push(len(MAX_FRAME + 1))).toThrow(FrameError);
    expect(() => new FrameReader().push(len(0))).toThrow(FrameError);
    expect(() => new FrameReader().push(Buffer.concat([len(1), Buffer.from([0xc1])]))).toThrow(FrameError);
    expect(() => new FrameReader().push(Buffer.concat([len(1), Buffer.from([0x01])]))).toThrow(/without a type/);
  });

  it('bounds the first frame: a server takes the auth only, then frames up to MAX_FRAME', () => {
    expect(() => new FrameReader(MAX_AUTH_FRAME).push(len(MAX_AUTH_FRAME + 1))).toThrow(/out of bounds/);
    const r = new FrameReader(MAX_AUTH_FRAME);
    const big = encodeFrame({ t: 'big', data: new Uint8Array(1 << 20) });
    expect(r.push(Buffer.concat([encodeFrame({ t: 'auth' }), big.subarray(0, 100)]))).toEqual([{ t: 'auth' }]);
    expect(r.push(big.subarray(100)).map((f) => f.t)).toEqual(['big']);
  });

  it('closes a connection whose first frame is longer than an auth, before its bytes come, and one that never authenticates', async () => {
    // 64 MiB announced: rejected on its length (it was buffered whole and decoded before the secret's check).
    const big = await serve((s) => s.write(len(MAX_FRAME)));
    expect(big.rejected).toEqual([`frame length ${MAX_FRAME} out of bounds`]);
    const silent = await serve(() => undefined, 200);
    expect(silent.rejected).toEqual(['no auth within 0.2 s']);
    const good = await serve((s) => {
      s.write(encodeFrame({ t: 'auth', v: WIRE_VERSION, secret: 'the-secret' }));
      s.end(encodeFrame({ t: 'hello', data: new Uint8Array(1 << 20) }));
    }, 200);
    expect(good).toEqual({ rejected: [], frames: ['hello'] });
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
