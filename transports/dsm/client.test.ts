/**
 * A rank's link to a node agent (AgentLink) against the agent's real data
 * service and its native thread, in this process over loopback TCP: puts to a
 * heap take one way at a time, so that a later put never overtakes an earlier
 * one still on the other way. A connection that does not show the job secret
 * in time is closed, by the service and by its native thread.
 */
import { connect } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { parseTcpAddress } from '../../core/wire.js';
import { allocShared } from '../shm/arena.js';
import { ControlSegment } from '../shm/control.js';
import * as xpmem from '../xpmem/index.js';
import { AgentLink } from './client.js';
import { DsmService } from './service.js';

const SECRET = 'job-secret';
const RANKS = [4, 5]; // world ranks of the agent's node's local ranks 0 and 1
const HEAP_BYTES = 4096;

const { segment } = ControlSegment.create(RANKS.length, 4096, 2);
const heapBuffer = allocShared(HEAP_BYTES, 'test-heap');
const heap = new Uint8Array(heapBuffer);
segment.publishHeap(0, xpmem.make(heapBuffer, 0o600), HEAP_BYTES);
// Node 1 of 2: other nodes' ranks reach it, so its native thread serves gets, puts and atomics too.
const AUTH_TIMEOUT_MS = 400;
const logged: string[] = [];
const service = new DsmService({ ctrl: segment, ranks: RANKS, nodeIndex: 1, nnodes: 2, secret: SECRET, log: (m) => logged.push(m), authTimeoutMs: AUTH_TIMEOUT_MS });
const address = await service.listen({ host: '127.0.0.1' });
const link = await AgentLink.open(1, 'node1', address, SECRET, 0);
afterAll(() => {
  link.close();
  service.close();
});

describe("a rank's link to an agent", () => {
  it('keeps a heap\'s puts on the link while one is unflushed there, though a reply made the heap served natively', async () => {
    link.heapPut(4, 0, Uint8Array.of(1)); // on the link: the agent does not serve rank 4's heap natively yet
    expect(link.unflushed).toBe(1);
    // A get's reply: the agent has attached the heap, its native thread serves it from now on.
    const dst = new Uint8Array(8);
    await link.heapGet(4, 8, dst);
    // The put still on the link is not flushed: the next one goes the same way, or it could land first.
    link.heapPut(4, 0, Uint8Array.of(2));
    expect(link.unflushed).toBe(2);
    await link.flush();
    expect(heap[0]).toBe(2);
    // Flushed: now to the native thread (the link's count stays), and in order with its gets.
    link.heapPut(4, 0, Uint8Array.of(3));
    expect(link.unflushed).toBe(0);
    await link.flush();
    expect(heap[0]).toBe(3);
  });

  it('closes a connection that has not shown the secret in time, on the service and on its native thread, and serves the others', async () => {
    const { host, port } = parseTcpAddress(address)!;
    expect(service.atomicsPort).toBeGreaterThan(0);
    // Each sends the start of its first frame and nothing more: a peer that never authenticates.
    const started = Date.now();
    const closedAfter = (to: number, partial: Buffer): Promise<number> =>
      new Promise((resolve) => {
        const s = connect(to, host, () => s.write(partial));
        s.on('error', () => undefined);
        s.on('close', () => resolve(Date.now() - started));
        setTimeout(() => {
          s.destroy();
          resolve(-1);
        }, 10 * AUTH_TIMEOUT_MS);
      });
    const hello = Buffer.alloc(12);
    hello.writeUInt32LE(0x4d41504d, 0); // the native thread's hello magic, then a secret length it never sends
    hello.writeUInt32LE(64, 4);
    const [data, atomics] = await Promise.all([closedAfter(port, Buffer.alloc(8)), closedAfter(service.atomicsPort, hello)]);
    expect(data, 'data service').toBeGreaterThanOrEqual(AUTH_TIMEOUT_MS - 50);
    expect(atomics, 'native thread').toBeGreaterThanOrEqual(AUTH_TIMEOUT_MS - 50);
    expect(logged.join('\n')).toMatch(/no AUTH within 0.4 s/);
    // The rank's link, authenticated before, still goes both ways.
    heap.set([9, 8, 7], 16);
    const dst = new Uint8Array(3);
    await link.heapGet(4, 16, dst);
    expect([...dst]).toEqual([9, 8, 7]);
  });
});
