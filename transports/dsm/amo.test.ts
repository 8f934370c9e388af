/**
 * The native serving thread of shared-variable atomics and a rank's channel to
 * it, in one process over loopback TCP: every element type and operation gives
 * what transports/atomics.ts gives on a copy of the same memory (the agent's
 * JavaScript path), page versions move as VarMemory.bump moves them, requests
 * the server cannot serve are refused with the reason and the connection goes
 * on, and a wrong secret or a malformed hello closes only that connection.
 */
import { connect } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { DTYPE_CTORS } from '../../core/codec.js';
import { applyAtomic, isBigDtype } from '../atomics.js';
import { AtomicOp } from '../endpoint.js';
import { WAKE_HEAP } from '../shm/control.js';
import { AmoChannel, AmoServer, heapTarget, serverSpinMicros, setAmoSpin } from './amo.js';
import { PAGE_BYTES, VarMemory, varLayout } from './layout.js';

const SECRET = 'the-job-secret';
const ID = 3;
const BYTES = 3 * PAGE_BYTES;

// Node 0 of 2: pages 0 and 2 are homed here, page 1 on node 1.
const server = AmoServer.start('127.0.0.1', SECRET, 0, 2, 0);
const memory = new VarMemory(new ArrayBuffer(varLayout(BYTES).total), BYTES);
server.register(ID, memory, BYTES);
const channel = AmoChannel.open('127.0.0.1', server.port, SECRET, 'node0');
afterAll(() => {
  channel.close();
  server.stop();
});

const codeOf = (Ctor: unknown): number => DTYPE_CTORS.indexOf(Ctor as (typeof DTYPE_CTORS)[number]) + 1;

describe('shared-variable atomics on the agent\'s native thread', () => {
  it('gives what the JavaScript path gives, for every element type and operation', async () => {
    const twin = new ArrayBuffer(BYTES);
    const numbers = [5, 200, -3, 1.7, -1, 2 ** 33 + 7, 0.1, -0, NaN, 1e300];
    const bigs = [5n, -3n, 2n ** 63n - 1n, -(2n ** 63n), 1n];
    let offset = 64;
    for (const Ctor of [Int8Array, Uint8Array, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array]) {
      const dtype = codeOf(Ctor);
      const operands: Array<number | bigint> = isBigDtype(dtype) ? bigs : numbers;
      offset = Math.ceil(offset / 8) * 8 + 8;
      for (const op of [AtomicOp.FETCH_ADD, AtomicOp.SWAP, AtomicOp.COMPARE_SWAP, AtomicOp.FETCH, AtomicOp.SET, AtomicOp.FETCH_ADD]) {
        for (const a of operands) {
          // COMPARE_SWAP with the current value as the expected one too, so that both outcomes occur.
          const current = applyAtomic(twin, dtype, offset, AtomicOp.FETCH, a, a);
          for (const expected of op === AtomicOp.COMPARE_SWAP ? [a, current] : [a]) {
            const want = applyAtomic(twin, dtype, offset, op, expected, a);
            const got = await channel.atomic(ID, offset, op, dtype, expected, a);
            expect(Object.is(got, want) || got === want, `${Ctor.name} op ${op} (${String(expected)}, ${String(a)}): ${String(got)} vs ${String(want)}`).toBe(true);
          }
        }
      }
      const at = new Uint8Array(memory.data.buffer, memory.data.byteOffset + offset, Ctor.BYTES_PER_ELEMENT);
      expect([...at], `${Ctor.name}'s bytes`).toEqual([...new Uint8Array(twin, offset, Ctor.BYTES_PER_ELEMENT)]);
    }
  });

  it('bumps the version of the page it changed, not for a plain fetch', async () => {
    const i32 = codeOf(Int32Array);
    const before = memory.versions[2]!;
    await channel.atomic(ID, 2 * PAGE_BYTES + 12, AtomicOp.FETCH_ADD, i32, 4, 4);
    await channel.atomic(ID, 2 * PAGE_BYTES + 12, AtomicOp.FETCH, i32, 0, 0);
    expect(memory.versions[2]).toBe(before + 1);
    expect(new Int32Array(memory.data.buffer, memory.data.byteOffset + 2 * PAGE_BYTES + 12, 1)[0]).toBe(4);
  });

  it('refuses what it cannot serve, with the reason, and the connection goes on', async () => {
    const i32 = codeOf(Int32Array);
    await expect(channel.atomic(ID, PAGE_BYTES, AtomicOp.FETCH_ADD, i32, 1, 1)).rejects.toThrow(/page is not homed on this node/);
    await expect(channel.atomic(99, 0, AtomicOp.FETCH_ADD, i32, 1, 1)).rejects.toThrow(/no such shared variable/);
    await expect(channel.atomic(ID, BYTES, AtomicOp.FETCH_ADD, i32, 1, 1)).rejects.toThrow(/outside the variable or heap, or misaligned/);
    await expect(channel.atomic(ID, 2, AtomicOp.FETCH_ADD, i32, 1, 1)).rejects.toThrow(/outside the variable or heap, or misaligned/);
    await expect(channel.atomic(ID, 0, AtomicOp.FETCH_ADD, codeOf(Uint8ClampedArray), 1, 1)).rejects.toThrow(/bad operation or element type/);
    await expect(channel.atomic(ID, 0, 9, i32, 1, 1)).rejects.toMatchObject({ code: 'ERR_MPRUN_PROTOCOL' });
    expect(await channel.atomic(ID, 0, AtomicOp.FETCH_ADD, i32, 1, 1)).toBe(0);
  });

  it('serves atomics issued together, in order', async () => {
    const i32 = codeOf(Int32Array);
    const olds = await Promise.all([1, 2, 3, 4].map(() => channel.atomic(ID, 40, AtomicOp.FETCH_ADD, i32, 10, 10)));
    expect(olds).toEqual([0, 10, 20, 30]);
  });

  it('closes a connection with the wrong secret or a malformed hello, and serves the others', async () => {
    const wrong = AmoChannel.open('127.0.0.1', server.port, 'not-the-secret', 'node0');
    const i32 = codeOf(Int32Array);
    await expect(wrong.atomic(ID, 0, AtomicOp.FETCH, i32, 0, 0)).rejects.toMatchObject({ code: 'ERR_MPRUN_UNREACHABLE', message: /lost the agent of node node0/ });
    await expect(wrong.atomic(ID, 0, AtomicOp.FETCH, i32, 0, 0)).rejects.toMatchObject({ code: 'ERR_MPRUN_UNREACHABLE' });
    wrong.close();
    const closed = await new Promise<boolean>((resolve) => {
      const s = connect(server.port, '127.0.0.1', () => s.write(Buffer.alloc(64, 0xee)));
      s.on('close', () => resolve(true));
      s.on('error', () => undefined);
      setTimeout(() => resolve(false), 5000).unref();
    });
    expect(closed).toBe(true);
    expect(await channel.atomic(ID, 0, AtomicOp.FETCH, i32, 0, 0)).toBe(1);
  });

  it('serves the others while a hello is still arriving (longer than a request, not yet whole)', async () => {
    const i32 = codeOf(Int32Array);
    const before = await channel.atomic(ID, 0, AtomicOp.FETCH, i32, 0, 0);
    const partial = connect(server.port, '127.0.0.1');
    partial.on('error', () => undefined);
    await new Promise<void>((resolve) => partial.once('connect', () => resolve()));
    // The magic, a secret of 1,024 bytes announced, 40 of them sent: 48 bytes, more than a request's 32.
    const hello = Buffer.alloc(48);
    hello.writeUInt32LE(0x4d41504d, 0);
    hello.writeUInt32LE(1024, 4);
    partial.write(hello);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // The serving thread looped on it for ever before (no answer, and the agent could not stop).
    const answer = await Promise.race([channel.atomic(ID, 0, AtomicOp.FETCH, i32, 0, 0), new Promise((resolve) => setTimeout(() => resolve('no answer in 5 s'), 5000).unref())]);
    expect(answer).toBe(before);
    partial.destroy();
  });

  it('serves a rank\'s heap once given it, ringing its doorbell; before that the caller asks elsewhere', async () => {
    const i32 = codeOf(Int32Array);
    const elsewhere = (): Promise<number> => Promise.resolve(-42);
    expect(await channel.atomic(heapTarget(7), 0, AtomicOp.FETCH_ADD, i32, 1, 1, elsewhere)).toBe(-42);
    const heap = new ArrayBuffer(4096);
    const words = new Int32Array(16); // [sleeping, door] of the rank, as in a control segment
    words[0] = WAKE_HEAP;
    server.registerHeap(7, heap, words, 0, 1, WAKE_HEAP);
    expect(await channel.atomic(heapTarget(7), 8, AtomicOp.FETCH_ADD, i32, 5, 5, elsewhere)).toBe(0);
    expect(await channel.atomic(heapTarget(7), 8, AtomicOp.COMPARE_SWAP, i32, 5, 9, elsewhere)).toBe(5);
    expect(new Int32Array(heap, 8, 1)[0]).toBe(9);
    expect([words[0], words[1]]).toEqual([0, 1]); // the sleeper was woken once: its word cleared, the door moved
    await expect(channel.atomic(heapTarget(7), 4096, AtomicOp.FETCH_ADD, i32, 1, 1, elsewhere)).rejects.toThrow(/outside/);
  });

  it('gets a heap\'s bytes, of 8 bytes and of 4 MiB (sent in pieces), and refuses a range outside it', async () => {
    const heap = new Uint8Array(4 << 20).map((_, i) => (i * 7) & 0xff);
    const words = new Int32Array(16);
    const fromLink = (): Promise<void> => Promise.reject(new Error('asked on the link'));
    await expect(channel.get(heapTarget(8), 0, new Uint8Array(8), fromLink)).rejects.toThrow(/asked on the link/);
    server.registerHeap(8, heap.buffer, words, 0, 1, WAKE_HEAP);
    const small = new Uint8Array(8);
    await channel.get(heapTarget(8), 1000, small, fromLink);
    expect([...small]).toEqual([...heap.subarray(1000, 1008)]);
    const whole = new Uint8Array(heap.length);
    await channel.get(heapTarget(8), 0, whole, fromLink);
    expect(Buffer.compare(whole, heap)).toBe(0);
    await expect(channel.get(heapTarget(8), heap.length - 4, new Uint8Array(8), fromLink)).rejects.toThrow(/outside/);
    // The connection goes on after a refusal, and atomics and gets share it in order.
    const i32 = codeOf(Int32Array);
    const before = new DataView(heap.buffer).getInt32(0, true);
    expect(await channel.atomic(heapTarget(8), 0, AtomicOp.SET, i32, 99, 99)).toBe(before);
    const first = new Uint8Array(4);
    await channel.get(heapTarget(8), 0, first, fromLink);
    expect(new DataView(first.buffer).getInt32(0, true)).toBe(99);
  });

  it('puts into a heap: small and 4 MiB ones land whole and in order with gets, and a flush reports a refused one', async () => {
    const heap = new Uint8Array(4 << 20);
    const words = new Int32Array(16);
    words[0] = WAKE_HEAP;
    server.registerHeap(9, heap.buffer, words, 0, 1, WAKE_HEAP);
    channel.put(heapTarget(9), 3, Uint8Array.of(1, 2, 3));
    const back = new Uint8Array(3);
    await channel.get(heapTarget(9), 3, back); // served after the put on the same connection
    expect([...back]).toEqual([1, 2, 3]);
    expect(words[1]).toBeGreaterThan(0); // the sleeper's doorbell rang for the put
    const big = new Uint8Array(heap.length).map((_, i) => (i * 13) & 0xff);
    channel.put(heapTarget(9), 0, big);
    channel.flush();
    expect(Buffer.compare(heap, big)).toBe(0);
    channel.put(heapTarget(9), heap.length - 2, new Uint8Array(8)); // outside: dropped, reported by the flush
    channel.put(heapTarget(9), 0, Uint8Array.of(42));
    expect(() => channel.flush()).toThrow(/outside the variable or heap, or misaligned/);
    expect(heap[0]).toBe(42); // the put after the refused one still landed
    channel.flush(); // the failure was reported once
  });

  it('a server and a client that poll before they sleep serve the same, every reply in order, and the server still stops at once', async () => {
    const polling = AmoServer.start('127.0.0.1', SECRET, 0, 1, 200);
    polling.register(ID, memory, BYTES);
    setAmoSpin(200);
    try {
      const c = AmoChannel.open('127.0.0.1', polling.port, SECRET, 'nodeP');
      const i32 = codeOf(Int32Array);
      await c.atomic(ID, 128, AtomicOp.SET, i32, 0, 0);
      // Back to back (each reply inside the server's poll) and with pauses longer than it (the server asleep again).
      for (let k = 0; k < 200; k++) {
        if (k % 50 === 49) await new Promise((r) => setTimeout(r, 5));
        expect(await c.atomic(ID, 128, AtomicOp.FETCH_ADD, i32, 1, 0)).toBe(k);
      }
      c.close();
      const t0 = performance.now();
      polling.stop();
      expect(performance.now() - t0).toBeLessThan(100);
    } finally {
      setAmoSpin(0);
    }
  });

  it("the serving thread polls 50 us where the node's ranks leave a core free, unless MPRUN_SPIN_US says otherwise", () => {
    expect(serverSpinMicros(1, 2, undefined)).toBe(50);
    expect(serverSpinMicros(1, 2, 'auto')).toBe(50);
    expect(serverSpinMicros(2, 2, 'auto')).toBe(0);
    expect(serverSpinMicros(3, 2, 'auto')).toBe(0);
    expect(serverSpinMicros(3, 2, '5')).toBe(5);
    expect(serverSpinMicros(1, 2, '0')).toBe(0);
  });

  it('a stopped server: the request fails naming the node, and so does the next', async () => {
    const other = AmoServer.start('127.0.0.1', SECRET, 0, 1, 0);
    other.register(ID, memory, BYTES);
    const c = AmoChannel.open('127.0.0.1', other.port, SECRET, 'nodeX');
    const i32 = codeOf(Int32Array);
    expect(await c.atomic(ID, 0, AtomicOp.FETCH, i32, 0, 0)).toBe(1);
    other.stop();
    await expect(c.atomic(ID, 0, AtomicOp.FETCH, i32, 0, 0)).rejects.toMatchObject({ code: 'ERR_MPRUN_UNREACHABLE', message: /node nodeX/ });
    await expect(c.atomic(ID, 0, AtomicOp.FETCH, i32, 0, 0)).rejects.toMatchObject({ code: 'ERR_MPRUN_UNREACHABLE' });
    c.close();
    expect(() => AmoChannel.open('127.0.0.1', other.port, SECRET, 'nodeX')).toThrow(/cannot connect to the agent of node nodeX/);
  });
});
