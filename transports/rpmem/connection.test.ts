/** An rpmem connection in process: frames out as written, replies matched, errors as librpmem names them. */
import { describe, expect, it } from 'vitest';
import { HEADER_BYTES } from '../../core/frames.js';
import { RpmemConnection } from './connection.js';
import { errnoNumber, RpmemFrame, RPMEM_PROTOCOL } from './protocol.js';

function setup(room = true): { conn: RpmemConnection; out: Uint8Array[]; reply: (id: number, status: number, body?: Uint8Array) => void } {
  const out: Uint8Array[] = [];
  const conn = new RpmemConnection(
    (b) => (out.push(b), room),
    () => Promise.resolve(),
  );
  return { conn, out, reply: (id, status, body) => conn.feed(RPMEM_PROTOCOL.frame(RpmemFrame.REPLY, { id, arg: status }, body)) };
}

describe('RpmemConnection', () => {
  it("writes a header and then the caller's payload itself (no copy)", async () => {
    const { conn, out } = setup();
    const payload = new Uint8Array(100);
    await conn.post(RpmemFrame.WRITE, { offset: 4096, arg: 7 }, payload);
    expect(out).toHaveLength(2);
    expect(out[0]!.byteLength).toBe(HEADER_BYTES);
    expect(out[1]).toBe(payload);
    expect(RPMEM_PROTOCOL.parseHeader(Buffer.from(out[0]!))).toMatchObject({ type: RpmemFrame.WRITE, bytes: HEADER_BYTES + 100, offset: 4096, arg: 7 });
  });

  it("lands a successful READ's bytes in the caller's array", async () => {
    const { conn, reply } = setup();
    const into = new Uint8Array(3);
    const r = conn.request(RpmemFrame.READ, { offset: 4096, length: 3 }, 'read', undefined, into);
    reply(1, 0, new Uint8Array([5, 6, 7]));
    expect(await r).toBe(into);
    expect([...into]).toEqual([5, 6, 7]);
  });

  it("rejects with the reply's errno and the target's message, and goes on", async () => {
    const { conn, reply } = setup();
    const r = conn.json(RpmemFrame.OPEN, {}, 'open', { poolSet: 'x.set' });
    reply(1, errnoNumber('ENOENT'), Buffer.from(JSON.stringify({ errno: 'ENOENT', message: 'no pool set file x.set' })));
    await expect(r).rejects.toMatchObject({ code: 'ERR_MPRUN_RPMEM', errno: 'ENOENT', message: expect.stringContaining('no pool set file x.set') });
    const ok = conn.json(RpmemFrame.LIST, {}, 'list', { dir: '.' });
    reply(2, 0, Buffer.from(JSON.stringify({ sets: ['a.set'] })));
    expect(await ok).toEqual({ sets: ['a.set'] });
    expect(conn.lost).toBeNull();
  });

  it('a frame that is no reply is a protocol error (EPROTO) that sticks', async () => {
    const { conn } = setup();
    const r = conn.request(RpmemFrame.DRAIN, {}, 'drain');
    conn.feed(RPMEM_PROTOCOL.frame(RpmemFrame.WRITE, { id: 1 }));
    await expect(r).rejects.toMatchObject({ errno: 'EPROTO', message: expect.stringContaining('unexpected WRITE 1 from the target') });
    await expect(conn.request(RpmemFrame.DRAIN, {}, 'drain')).rejects.toMatchObject({ errno: 'EPROTO' });
    await expect(conn.post(RpmemFrame.WRITE, {})).rejects.toMatchObject({ errno: 'EPROTO' });
  });
});
