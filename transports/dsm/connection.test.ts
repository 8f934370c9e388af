/**
 * A data connection to the agent in process, without sockets: the real
 * service parts over a control segment and a published heap, frames pushed
 * in (split at every byte boundary where it matters), replies and closes
 * collected. AUTH comes first; a malformed frame or a PUT/MSG the agent
 * cannot serve closes the connection; any other request it cannot serve gets
 * an ERROR reply and the connection goes on.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { decodeFrom } from '../../core/codec.js';
import type { TypedArray } from '../../core/types.js';
import { allocShared } from '../shm/arena.js';
import { ControlSegment } from '../shm/control.js';
import { NodeQueues, type RecordSink } from '../shm/queue.js';
import * as xpmem from '../xpmem/index.js';
import { writeOperand } from './atomic.js';
import { DataConnection } from './connection.js';
import { AMO, DSM_PROTOCOL, DsmFrame, frame, HEADER_BYTES, SemOp, type Header } from './frames.js';
import { PAGE_BYTES, varLayout } from './layout.js';
import { encodeFetch, encodeRegister, fetchRequests, MAX_FETCH_PAGES, packRuns, parseFetch, parsePages } from './page-wire.js';
import { dataServices } from './service.js';

const SECRET = 'job-secret';
const RANKS = [4, 5]; // world ranks of this node's local ranks 0 and 1
const HEAP_BYTES = 4096;
const F64 = 9; // codec type code of Float64Array

const { segment } = ControlSegment.create(RANKS.length, 4096, 2);
const heapBuffer = allocShared(HEAP_BYTES, 'test-heap');
const heap = new Uint8Array(heapBuffer);
segment.publishHeap(0, xpmem.make(heapBuffer, 0o600), HEAP_BYTES);
const services = dataServices({ ctrl: segment, ranks: RANKS, nodeIndex: 1, nnodes: 2, secret: SECRET, log: () => undefined });
afterAll(() => {
  services.relay.close();
  services.heaps.close();
  services.homes.close();
});

interface Reply {
  h: Header;
  payload: Buffer;
}

function open(auth = true): { c: DataConnection; replies: Reply[]; closed: string[]; send: (...frames: Buffer[]) => void } {
  const replies: Reply[] = [];
  const closed: string[] = [];
  const c = new DataConnection(services, {
    write: (...chunks) => {
      const b = Buffer.concat(chunks);
      for (let at = 0; at < b.byteLength; ) {
        const h = DSM_PROTOCOL.parseHeader(b.subarray(at, at + HEADER_BYTES));
        replies.push({ h, payload: b.subarray(at + HEADER_BYTES, at + h.bytes) });
        at += h.bytes;
      }
    },
    close: (reason) => closed.push(reason),
  });
  const send = (...frames: Buffer[]): void => c.push(Buffer.concat(frames));
  if (auth) {
    send(frame(DsmFrame.AUTH, { target: 0, id: 1 }, Buffer.from(SECRET)));
    expect(replies.splice(0)).toMatchObject([{ h: { type: DsmFrame.AUTH_OK, id: 1 } }]);
  }
  return { c, replies, closed, send };
}

function operands(a: number | bigint, b: number | bigint): Buffer {
  const out = Buffer.alloc(16);
  writeOperand(out, 0, a);
  writeOperand(out, 8, b);
  return out;
}

const errorText = (r: Reply | undefined): string => (r?.h.type === DsmFrame.ERROR ? r.payload.toString('utf8') : `not an ERROR: ${JSON.stringify(r?.h)}`);

describe('authentication', () => {
  it('answers AUTH with the secret, fed one byte at a time', () => {
    const { c, replies, closed } = open(false);
    const auth = frame(DsmFrame.AUTH, { target: 3, id: 9 }, Buffer.from(SECRET));
    for (const b of auth) c.push(Uint8Array.of(b));
    expect(replies).toMatchObject([{ h: { type: DsmFrame.AUTH_OK, id: 9 } }]);
    expect(c.peer).toBe(3);
    expect(closed).toEqual([]);
  });

  it('closes on a wrong secret, on any other first frame and on garbage, and ignores what follows', () => {
    for (const [first, why] of [
      [frame(DsmFrame.AUTH, { target: 0 }, Buffer.from('guess')), 'wrong job secret'],
      [frame(DsmFrame.PUT, { target: 4 }, new Uint8Array(8)), 'first frame was PUT, not AUTH'],
      [frame(DsmFrame.AUTH, {}, new Uint8Array(2000)), 'oversized AUTH frame'],
      [Buffer.from('GET / HTTP/1.0\r\n\r\n'.repeat(4)), 'dsm frame version'],
    ] as const) {
      const { c, replies, closed, send } = open(false);
      send(first, frame(DsmFrame.AUTH, { target: 0 }, Buffer.from(SECRET)));
      expect(closed).toHaveLength(1);
      expect(closed[0]).toContain(why);
      expect(replies).toEqual([]);
      expect(c.peer).toBe(-1);
    }
  });
});

describe('remote memory access', () => {
  it('lands a PUT in the heap, reads it back with GET, answers FLUSH in order', () => {
    const { replies, closed, send } = open();
    const put = frame(DsmFrame.PUT, { target: 4, offset: 64 }, Uint8Array.of(1, 2, 3, 4, 5));
    send(put.subarray(0, 20));
    send(put.subarray(20), frame(DsmFrame.FLUSH, { id: 2 }), frame(DsmFrame.GET, { target: 4, offset: 63, length: 7, id: 3 }));
    expect([...heap.subarray(64, 69)]).toEqual([1, 2, 3, 4, 5]);
    expect(replies.map((r) => [r.h.type, r.h.id])).toEqual([[DsmFrame.FLUSH_REPLY, 2], [DsmFrame.GET_REPLY, 3]]);
    expect([...replies[1]!.payload]).toEqual([0, 1, 2, 3, 4, 5, 0]);
    expect(closed).toEqual([]);
  });

  it('runs an AMO on the heap and replies with the old value', () => {
    const { replies, send } = open();
    new Float64Array(heapBuffer, 128, 1)[0] = 2.5;
    send(frame(DsmFrame.AMO, { target: 4, offset: 128, aux: AMO.FETCH_ADD | (F64 << 8), id: 4 }, operands(1, 1)));
    expect(replies[0]!.h).toMatchObject({ type: DsmFrame.AMO_REPLY, id: 4 });
    expect(replies[0]!.payload.readDoubleLE(0)).toBe(2.5);
    expect(new Float64Array(heapBuffer, 128, 1)[0]).toBe(3.5);
  });

  it('answers a GET or AMO it cannot serve with an ERROR naming why, and goes on', () => {
    const { replies, closed, send } = open();
    send(
      frame(DsmFrame.GET, { target: 4, offset: 4090, length: 16, id: 5 }),
      frame(DsmFrame.GET, { target: 9, offset: 0, length: 8, id: 6 }),
      frame(DsmFrame.GET, { target: 5, offset: 0, length: 8, id: 7 }),
      frame(DsmFrame.AMO, { target: 4, offset: 12, aux: AMO.FETCH_ADD | (F64 << 8), id: 8 }, operands(1, 1)),
      frame(DsmFrame.AMO, { target: 4, offset: 0, aux: AMO.FETCH_ADD | (77 << 8), id: 9 }, operands(1, 1)),
      frame(DsmFrame.GET, { target: 4, offset: 64, length: 2, id: 10 }),
    );
    expect(closed).toEqual([]);
    expect(replies.map((r) => r.h.id)).toEqual([5, 6, 7, 8, 9, 10]);
    expect(errorText(replies[0])).toBe("the agent of node 1: GET of [4090, 4106) is outside rank 4's heap of 4096 bytes");
    expect(errorText(replies[1])).toBe('the agent of node 1: GET for rank 9, which is not on this node');
    expect(errorText(replies[2])).toBe('the agent of node 1: local rank 1 has not published its heap yet');
    expect(errorText(replies[3])).toBe('the agent of node 1: atomic at byte 12 is outside or misaligned');
    expect(errorText(replies[4])).toBe('the agent of node 1: atomic on unknown type code 77');
    expect(replies[5]!.h.type).toBe(DsmFrame.GET_REPLY);
    expect([...replies[5]!.payload]).toEqual([1, 2]);
  });

  it('closes on a PUT it cannot serve (it has no reply), naming why, without moving a byte', () => {
    for (const [put, why] of [
      [frame(DsmFrame.PUT, { target: 4, offset: 2 ** 40 }, new Uint8Array(8).fill(0xff)), "PUT of [1099511627776, 1099511627784) is outside rank 4's heap of 4096 bytes"],
      [frame(DsmFrame.PUT, { target: 9, offset: 0 }, new Uint8Array(8).fill(0xff)), 'PUT for rank 9, which is not on this node'],
    ] as const) {
      const before = heap.slice();
      const { c, replies, closed, send } = open();
      send(put, frame(DsmFrame.FLUSH, { id: 2 }));
      expect(closed).toEqual([why]);
      expect(c.peer).toBe(0);
      expect(replies).toEqual([]);
      expect(heap).toEqual(before);
    }
  });

  it('closes on a malformed request: a payload its type does not take, a frame that is no request', () => {
    for (const [bad, why] of [
      [frame(DsmFrame.GET, { target: 4, length: 8 }, new Uint8Array(4)), 'GET with 4 bytes of payload, expected 0'],
      [frame(DsmFrame.AMO, { target: 4 }, new Uint8Array(8)), 'AMO with 8 bytes of payload, expected 16'],
      [frame(DsmFrame.AUTH_OK, {}), 'unexpected AUTH_OK frame'],
      [frame(DsmFrame.SEM, { aux: SemOp.CREATE }, new Uint8Array(5000)), 'oversized SEM frame'],
    ] as const) {
      const { closed, replies, send } = open();
      send(bad, frame(DsmFrame.FLUSH, { id: 2 }));
      expect(closed).toEqual([why]);
      expect(replies).toEqual([]);
    }
  });
});

describe('messages', () => {
  it('relays a MSG into the destination rank\'s queue, from the rank that sent it', () => {
    const { closed, send } = open();
    const values = Float64Array.of(1.5, -2, 3);
    send(frame(DsmFrame.MSG, { target: 5, id: 0, arg: 42, aux: F64 }, new Uint8Array(values.buffer)));
    expect(closed).toEqual([]);
    const got: Array<{ producer: number; origin: number; tag: number; data: unknown }> = [];
    const sink: RecordSink = {
      eager: (producer: number, origin: number, tag: number, dtype: number, view: TypedArray, off: number, len: number) => void got.push({ producer, origin, tag, data: decodeFrom(dtype, view, off, len) }),
      first: () => expect.unreachable('a small message is one record'),
      next: () => expect.unreachable('a small message is one record'),
    };
    expect(new NodeQueues(segment, 1).poll(sink)).toBe(true);
    expect(got).toEqual([{ producer: segment.gateway, origin: 0, tag: 42, data: values }]);
  });

  it('reassembles a message sent in pieces (MSG_START, MSG_PARTs) and relays it once, whole', () => {
    const { closed, send } = open();
    const values = Float64Array.from({ length: 700 }, (_, i) => i * 0.5 - 3);
    const bytes = new Uint8Array(values.buffer);
    // Pieces of 2,048, 2,048 and 1,504 bytes, as the client cuts at MAX_PAYLOAD.
    const h = { target: 4, id: 1, arg: 7, aux: F64 };
    send(frame(DsmFrame.MSG_START, { ...h, offset: bytes.byteLength }, bytes.subarray(0, 2048)));
    send(frame(DsmFrame.MSG_PART, { ...h, offset: 2048 }, bytes.subarray(2048, 4096)));
    const got: Array<{ origin: number; tag: number }> = [];
    const chunks: Buffer[] = [];
    const take = (view: TypedArray, off: number, len: number): void => void chunks.push(Buffer.from(new Uint8Array(view.buffer, view.byteOffset + off, len)));
    const sink: RecordSink = {
      eager: (_p: number, origin: number, tag: number, _dtype: number, view: TypedArray, off: number, len: number) => {
        got.push({ origin, tag });
        take(view, off, len);
      },
      first: (_p: number, origin: number, tag: number, _dtype: number, _total: number, view: TypedArray, off: number, len: number) => {
        got.push({ origin, tag });
        take(view, off, len);
      },
      next: (_p: number, view: TypedArray, off: number, len: number) => take(view, off, len),
    };
    const queues = new NodeQueues(segment, 0);
    expect(queues.poll(sink)).toBe(false); // nothing until the last piece
    send(frame(DsmFrame.MSG_PART, { ...h, offset: 4096 }, bytes.subarray(4096)));
    expect(closed).toEqual([]);
    // The queue takes a part at a time; the relay posts the rest as the rank reads.
    for (let round = 0; round < 100 && Buffer.concat(chunks).byteLength < bytes.byteLength; round++) {
      while (queues.poll(sink));
      services.relay.pump();
    }
    expect(got).toEqual([{ origin: 1, tag: 7 }]);
    expect(Buffer.concat(chunks).equals(bytes)).toBe(true);
  });

  it('closes on pieces that do not continue their message, or another frame between them', () => {
    const h = { target: 4, id: 1, arg: 7, aux: F64 };
    const start = frame(DsmFrame.MSG_START, { ...h, offset: 64 }, new Uint8Array(16));
    for (const [frames, why] of [
      [[frame(DsmFrame.MSG_PART, { ...h, offset: 16 }, new Uint8Array(16))], 'MSG_PART frame without a MSG_START'],
      [[start, frame(DsmFrame.MSG_PART, { ...h, offset: 24 }, new Uint8Array(16))], 'MSG_PART of 16 bytes at 24 does not continue the message (16 of 64 bytes in)'],
      [[start, frame(DsmFrame.MSG_PART, { ...h, arg: 8, offset: 16 }, new Uint8Array(16))], 'MSG_PART of 16 bytes at 16 does not continue the message (16 of 64 bytes in)'],
      [[start, frame(DsmFrame.MSG_PART, { ...h, offset: 16 }, new Uint8Array(56))], 'MSG_PART of 56 bytes at 16 does not continue the message (16 of 64 bytes in)'],
      [[start, frame(DsmFrame.FLUSH, { id: 3 })], 'FLUSH frame inside a message in pieces'],
      [[frame(DsmFrame.MSG_START, { ...h, offset: 8 }, new Uint8Array(16))], 'MSG_START of 16 bytes for a message of 8'],
    ] as const) {
      const { closed, send } = open();
      send(...frames);
      expect(closed).toEqual([why]);
    }
  });

  it('closes on a MSG for a rank not on this node, or of partial elements', () => {
    for (const [bad, why] of [
      [frame(DsmFrame.MSG, { target: 7, aux: F64 }, new Uint8Array(8)), 'MSG for rank 7, which is not on this node'],
      [frame(DsmFrame.MSG, { target: 4, aux: F64 }, new Uint8Array(12)), 'MSG of 12 bytes is not whole elements'],
    ] as const) {
      const { closed, send } = open();
      send(bad);
      expect(closed).toEqual([why]);
    }
  });
});

describe('shared variables at their home', () => {
  const bytes = 4 * PAGE_BYTES; // pages 1 and 3 are homed on node 1 of 2
  const segmentBuffer = allocShared(varLayout(bytes).total, 'test-var');
  const segid = xpmem.make(segmentBuffer, 0o600).toString();

  it('refuses requests for a variable it does not have with ERROR, dropping their payload, and goes on', () => {
    const { replies, closed, send } = open();
    const [runs] = packRuns([[PAGE_BYTES, new Uint8Array(100)]], 1 << 20);
    send(frame(DsmFrame.VAR_WRITE, { target: 7, id: 2 }, runs), frame(DsmFrame.VAR_FETCH, { target: 7, id: 3 }, encodeFetch([[1, 0]])), frame(DsmFrame.FLUSH, { id: 4 }));
    expect(closed).toEqual([]);
    expect(replies.map((r) => r.h.id)).toEqual([2, 3, 4]);
    expect(errorText(replies[0])).toBe('the agent of node 1: no shared variable 7 on this node');
    expect(errorText(replies[1])).toBe('the agent of node 1: no shared variable 7 on this node');
  });

  it('registers a variable, takes writes to its pages, serves the pages that moved and atomics on them', () => {
    const { replies, closed, send } = open();
    send(frame(DsmFrame.VAR_REGISTER, { target: 0, id: 2 }, encodeRegister(segid, bytes)));
    send(frame(DsmFrame.VAR_REGISTER, { target: 0, id: 3 }, encodeRegister(segid, bytes))); // again: a no-op
    const [runs] = packRuns([[PAGE_BYTES + 8, new Uint8Array(new Float64Array([6.5]).buffer)]], 1 << 20);
    send(frame(DsmFrame.VAR_WRITE, { target: 0, id: 4 }, runs));
    send(frame(DsmFrame.VAR_FETCH, { target: 0, id: 5 }, encodeFetch([[1, 0], [3, 0]])));
    send(frame(DsmFrame.VAR_AMO, { target: 0, offset: PAGE_BYTES + 8, aux: AMO.FETCH_ADD | (F64 << 8), id: 6 }, operands(1, 1)));
    send(frame(DsmFrame.VAR_AMO, { target: 0, offset: 8, aux: AMO.FETCH_ADD | (F64 << 8), id: 7 }, operands(1, 1)));
    const [wrongHome] = packRuns([[0, new Uint8Array(8)]], 1 << 20);
    send(frame(DsmFrame.VAR_WRITE, { target: 0, id: 8 }, wrongHome));
    expect(closed).toEqual([]);
    expect(replies.map((r) => [r.h.type, r.h.id])).toEqual([
      [DsmFrame.OK, 2],
      [DsmFrame.OK, 3],
      [DsmFrame.OK, 4],
      [DsmFrame.VAR_PAGES, 5],
      [DsmFrame.AMO_REPLY, 6],
      [DsmFrame.ERROR, 7],
      [DsmFrame.ERROR, 8],
    ]);
    const pages = parsePages(replies[3]!.payload);
    expect(pages.map((p) => [p.page, p.version])).toEqual([[1, 1]]); // page 3 has not moved
    expect(new Float64Array(new Uint8Array(pages[0]!.bytes).buffer)[1]).toBe(6.5);
    expect(replies[4]!.payload.readDoubleLE(0)).toBe(6.5);
    expect(errorText(replies[5])).toBe('the agent of node 1: VAR_AMO on page 0, not homed here');
    expect(errorText(replies[6])).toBe('the agent of node 1: VAR_WRITE to page 0, which is not homed here');
    const data = new Float64Array(segmentBuffer, varLayout(bytes).data, bytes / 8);
    expect(data[PAGE_BYTES / 8 + 1]).toBe(7.5);
  });

  it('refuses a VAR_FETCH whose reply would not fit a frame (ERROR), and goes on', () => {
    const { replies, closed, send } = open();
    send(frame(DsmFrame.VAR_REGISTER, { target: 0, id: 2 }, encodeRegister(segid, bytes)));
    // Page 1 (homed here) asked for MAX_FETCH_PAGES + 1 times, at a version it does not have.
    const asked = Array.from({ length: MAX_FETCH_PAGES + 1 }, (): [number, number] => [1, 0xfffffff0]);
    send(frame(DsmFrame.VAR_FETCH, { target: 0, id: 3 }, encodeFetch(asked)));
    send(frame(DsmFrame.VAR_FETCH, { target: 0, id: 4 }, encodeFetch(asked.slice(1))));
    expect(closed).toEqual([]);
    expect(replies.map((r) => [r.h.type, r.h.id])).toEqual([
      [DsmFrame.OK, 2],
      [DsmFrame.ERROR, 3],
      [DsmFrame.VAR_PAGES, 4],
    ]);
    expect(errorText(replies[1])).toContain(`VAR_FETCH of ${MAX_FETCH_PAGES + 1} changed pages: at most ${MAX_FETCH_PAGES} a request`);
  });

  it('asks for pages in requests whose replies fit a frame', () => {
    const pages = Array.from({ length: 2 * MAX_FETCH_PAGES + 3 }, (_, i): [number, number] => [2 * i + 1, i]);
    const asks = fetchRequests(pages);
    expect(asks.map((a) => parseFetch(a).length)).toEqual([MAX_FETCH_PAGES, MAX_FETCH_PAGES, 3]);
    expect(asks.flatMap((a) => parseFetch(a))).toEqual(pages);
  });

  it('closes on a VAR_REGISTER that is not one', () => {
    const { closed, send } = open();
    send(frame(DsmFrame.VAR_REGISTER, { target: 1, id: 2 }, Buffer.from('{not json')));
    expect(closed).toHaveLength(1);
    expect(closed[0]).toMatch(/^VAR_REGISTER payload is not JSON/);
  });
});

describe('semaphores', () => {
  it('answers a WAIT when a POST (from another connection) hands it the permit; refuses unknown names', () => {
    const a = open();
    const b = open();
    const name = Buffer.from('lock');
    a.send(frame(DsmFrame.SEM, { aux: SemOp.CREATE, arg: 0, id: 2 }, name), frame(DsmFrame.SEM, { aux: SemOp.WAIT, id: 3 }, name));
    expect(a.replies.map((r) => [r.h.type, r.h.id])).toEqual([[DsmFrame.OK, 2]]);
    b.send(frame(DsmFrame.SEM, { aux: SemOp.POST, id: 7 }, name), frame(DsmFrame.SEM, { aux: SemOp.WAIT, id: 8 }, Buffer.from('other')));
    expect(a.replies.map((r) => [r.h.type, r.h.id])).toEqual([[DsmFrame.OK, 2], [DsmFrame.OK, 3]]);
    expect(b.replies.map((r) => [r.h.type, r.h.id])).toEqual([[DsmFrame.OK, 7], [DsmFrame.ERROR, 8]]);
    expect(errorText(b.replies[1])).toBe("the agent of node 1: no semaphore 'other' here");
  });

  it('does not answer a waiter whose connection is gone: its permit stays for the next wait', () => {
    const a = open();
    const b = open();
    const name = Buffer.from('gone');
    a.send(frame(DsmFrame.SEM, { aux: SemOp.CREATE, arg: 0, id: 2 }, name), frame(DsmFrame.SEM, { aux: SemOp.WAIT, id: 3 }, name));
    a.c.lost();
    b.send(frame(DsmFrame.SEM, { aux: SemOp.POST, id: 4 }, name), frame(DsmFrame.SEM, { aux: SemOp.WAIT, id: 5 }, name));
    expect(a.replies.map((r) => r.h.id)).toEqual([2]);
    expect(b.replies.map((r) => r.h.id)).toEqual([4, 5]);
    expect(services.semaphores.state('gone')).toEqual({ count: 0, waiting: 0 });
  });
});
