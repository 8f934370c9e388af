import { describe, expect, it } from 'vitest';
import { RequestChannel, type ReplyRules, type SendFrame } from './channel.js';
import { FrameParser, FrameProtocol, HEADER_BYTES, ProtocolError, type Header } from './frames.js';

const TYPES = { ASK: 1, REPLY: 2, ERROR: 3 } as const;
const P = new FrameProtocol('test', 1, TYPES, 1024);

/** REPLY resolves with its payload (in the request's array when it fits), ERROR rejects with its text; the context names the request. */
const RULES: ReplyRules<string, Uint8Array> = {
  land: (h, into) => (h.type === TYPES.REPLY && into !== null && into.byteLength === h.bytes - HEADER_BYTES ? into : null),
  settle: (h, payload, what) => {
    if (h.type === TYPES.ERROR) throw new Error(`${what}: ${Buffer.from(payload).toString()}`);
    return payload;
  },
};

/** A channel whose frames go to `sent`, and a way to answer them as the peer would. */
function setup(send?: SendFrame): { ch: RequestChannel<string, Uint8Array>; sent: Array<{ type: number; id: number; payload?: Uint8Array }>; answer: (type: number, id: number, payload?: Uint8Array) => void } {
  const sent: Array<{ type: number; id: number; payload?: Uint8Array }> = [];
  const ch = new RequestChannel(P, send ?? ((type, h, payload) => void sent.push({ type, id: h.id!, ...(payload ? { payload } : {}) })), RULES);
  const parser = new FrameParser(ch, P);
  return { ch, sent, answer: (type, id, payload) => void parser.push(P.frame(type, { id }, payload)) };
}

describe('RequestChannel', () => {
  it('gives each request its own id and settles it with the reply that carries that id, in any order', async () => {
    const { ch, sent, answer } = setup();
    const a = ch.request(TYPES.ASK, { target: 5 }, Buffer.from('a'), null, 'a');
    const b = ch.request(TYPES.ASK, {}, undefined, null, 'b');
    expect(sent.map((s) => s.id)).toEqual([1, 2]);
    expect(ch.waiting).toBe(2);
    answer(TYPES.REPLY, 2, Buffer.from('for b'));
    answer(TYPES.REPLY, 1, Buffer.from('for a'));
    expect(Buffer.from(await a).toString()).toBe('for a');
    expect(Buffer.from(await b).toString()).toBe('for b');
    expect(ch.waiting).toBe(0);
  });

  it("lands a reply's payload in the request's own array", async () => {
    const { ch, answer } = setup();
    const into = new Uint8Array(4);
    const r = ch.request(TYPES.ASK, {}, undefined, into, 'read');
    answer(TYPES.REPLY, 1, new Uint8Array([1, 2, 3, 4]));
    expect(await r).toBe(into);
    expect([...into]).toEqual([1, 2, 3, 4]);
  });

  it('rejects one request whose reply reports failure, and goes on', async () => {
    const { ch, answer } = setup();
    const bad = ch.request(TYPES.ASK, {}, undefined, null, 'open');
    const good = ch.request(TYPES.ASK, {}, undefined, null, 'close');
    answer(TYPES.ERROR, 1, Buffer.from('no such pool'));
    answer(TYPES.REPLY, 2);
    await expect(bad).rejects.toThrow('open: no such pool');
    expect((await good).byteLength).toBe(0);
    expect(ch.error).toBeNull();
  });

  it('refuses a reply that answers no request', () => {
    const { ch, answer } = setup();
    void ch.request(TYPES.ASK, {}, undefined, null, 'x');
    expect(() => answer(TYPES.REPLY, 9)).toThrow(new ProtocolError('REPLY 9 answers no request'));
  });

  it('fails every waiting request on loss, and every later one with the same error (sticky); the first error counts', async () => {
    const { ch, sent } = setup();
    const a = ch.request(TYPES.ASK, {}, undefined, null, 'a');
    const b = ch.request(TYPES.ASK, {}, undefined, null, 'b');
    const lost = new Error('connection closed');
    ch.fail(lost);
    ch.fail(new Error('later'));
    await expect(a).rejects.toBe(lost);
    await expect(b).rejects.toBe(lost);
    await expect(ch.request(TYPES.ASK, {}, undefined, null, 'c')).rejects.toBe(lost);
    expect(sent).toHaveLength(2);
    expect(ch.error).toBe(lost);
    expect(ch.waiting).toBe(0);
  });

  it('fails the channel when a send that waited for room rejects', async () => {
    const lost = new Error('write failed');
    const { ch } = setup(() => Promise.reject(lost));
    await expect(ch.request(TYPES.ASK, {}, undefined, null, 'a')).rejects.toBe(lost);
    expect(ch.error).toBe(lost);
  });

  it('rejects only the request whose send throws', async () => {
    let n = 0;
    const { ch } = setup(() => {
      if (n++ === 0) throw new Error('cannot encode');
    });
    await expect(ch.request(TYPES.ASK, {}, undefined, null, 'a')).rejects.toThrow('cannot encode');
    void ch.request(TYPES.ASK, {}, undefined, null, 'b');
    expect(ch.error).toBeNull();
    expect(ch.waiting).toBe(1);
  });

  it('after close, refuses new requests and leaves those in flight unsettled', async () => {
    const { ch } = setup();
    let settled = false;
    void ch.request(TYPES.ASK, {}, undefined, null, 'a').then(
      () => (settled = true),
      () => (settled = true),
    );
    const closed = new Error('finalized');
    ch.close(closed);
    await expect(ch.request(TYPES.ASK, {}, undefined, null, 'b')).rejects.toBe(closed);
    ch.fail(new Error('socket closed'));
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    expect(ch.error).toBe(closed);
  });

  it('passes the header fields through with the id added', () => {
    const seen: Header[] = [];
    const ch = new RequestChannel(P, (type, h, payload) => void seen.push(P.parseHeader(P.frame(type, h, payload))), RULES);
    void ch.request(TYPES.ASK, { target: -3, offset: 2 ** 40, aux: 7, arg: 11 }, new Uint8Array(5), null, 'x');
    expect(seen[0]).toMatchObject({ type: TYPES.ASK, id: 1, target: -3, offset: 2 ** 40, aux: 7, arg: 11, length: 5 });
  });
});
