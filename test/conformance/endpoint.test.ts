/**
 * The endpoint conformance suite (transports/endpoint.ts), instantiated once
 * per endpoint implementation that can run in one process: self, xpmem over
 * each mapping backend (shm, and cma which copies only), with the process as
 * its own peer. Every capability an endpoint advertises must work, and what
 * it does not advertise must fail clearly (the rule of UCX's uct tests:
 * wrong flags make the selector pick a transport that then fails). The dsm
 * endpoint runs the same operations across namespace nodes in
 * test/cluster/dsm.test.ts (test/apps/api.ts), the UCX endpoint in its own test.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { DTYPE_MSGPACK, dtypeOf, encode } from '../../core/codec.js';
import type { TypedArray } from '../../core/types.js';
import { isMprunError } from '../../core/errors.js';
import { native } from '../../native/index.js';
import { AtomicOp, type Endpoint } from '../../transports/endpoint.js';
import { SelfEndpoint } from '../../transports/self.js';
import { allocShared } from '../../transports/shm/arena.js';
import { ControlSegment } from '../../transports/shm/control.js';
import { ShmEndpoint } from '../../transports/shm/endpoint.js';
import { ShmMessages } from '../../transports/shm/messages.js';
import { NodeQueues, type RecordSink } from '../../transports/shm/queue.js';
import * as xpmem from '../../transports/xpmem/index.js';

const HEAP = 4 << 20;

interface Arrival {
  source: number;
  tag: number;
  dtype: number;
  bytes: Uint8Array;
}

/** An endpoint to a peer whose heap the test can see, and the messages that reached the peer. */
interface Pair {
  ep: Endpoint;
  /** The peer's heap as the peer sees it. */
  target: ArrayBuffer;
  /** Delivers what was sent (a receiver's polling), then returns every arrival so far. */
  received(): Arrival[];
  close(): void;
}

const copyBytes = (v: TypedArray, byteOffset = 0, byteLength = v.byteLength): Uint8Array => new Uint8Array(v.buffer.slice(v.byteOffset + byteOffset, v.byteOffset + byteOffset + byteLength) as ArrayBuffer);

function selfPair(): Pair {
  const heap = allocShared(HEAP, 'conf-self');
  const arrivals: Arrival[] = [];
  const ep = new SelfEndpoint(0, heap, allocShared(4096), { arrived: (source, tag, dtype, payload) => void arrivals.push({ source, tag, dtype, bytes: copyBytes(payload) }) });
  return { ep, target: heap, received: () => arrivals, close: () => native().release(heap) };
}

/** This process as local rank 0 sending to itself as local rank 1, through the node segment and an XPMEM attachment. */
function shmPair(backend: 'shm' | 'cma'): Pair {
  xpmem.useBackend(backend);
  const heap = allocShared(HEAP, 'conf-shm');
  const scratch = allocShared(4096, 'conf-scratch');
  const { segment: ctrl, fd } = ControlSegment.create(2, 64 * 1024, 2);
  native().closeFd(fd);
  const shm = new ShmMessages(new NodeQueues(ctrl, 0), 16 * 1024, 2);
  const peer = {
    rank: 1,
    localRank: 1,
    pid: process.pid,
    heap: new xpmem.LazyAttachment(xpmem.make(heap), heap.byteLength),
    scratch: new xpmem.LazyAttachment(xpmem.make(scratch), scratch.byteLength),
    heapAddress: native().addressOf(heap),
  };
  const ep = new ShmEndpoint(peer, ctrl, shm, backend);
  const inbox = new NodeQueues(ctrl, 1);
  const arrivals: Arrival[] = [];
  const partial = new Map<number, { tag: number; dtype: number; bytes: Uint8Array; filled: number }>();
  const sink: RecordSink = {
    eager: (producer, _origin, tag, dtype, view, byteOffset, byteLength) => void arrivals.push({ source: producer, tag, dtype, bytes: copyBytes(view, byteOffset, byteLength) }),
    first: (producer, _origin, tag, dtype, total, view, byteOffset, byteLength) => {
      partial.set(producer, { tag, dtype, bytes: new Uint8Array(total), filled: 0 });
      sink.next(producer, view, byteOffset, byteLength);
    },
    next: (producer, view, byteOffset, byteLength) => {
      const p = partial.get(producer)!;
      p.bytes.set(copyBytes(view, byteOffset, byteLength), p.filled);
      p.filled += byteLength;
      if (p.filled === p.bytes.byteLength) {
        partial.delete(producer);
        arrivals.push({ source: producer, tag: p.tag, dtype: p.dtype, bytes: p.bytes });
      }
    },
  };
  return {
    ep,
    target: heap,
    received: () => {
      // The receiver drains while the sender progresses (a large message is streamed as fragments).
      for (let i = 0; i < 10_000 && (shm.busy() || inbox.pending()); i++) {
        shm.progress();
        while (inbox.poll(sink));
      }
      return arrivals;
    },
    close: () => {
      ep.close();
      ctrl.unmap();
      native().release(heap);
      native().release(scratch);
      xpmem.useBackend(null);
    },
  };
}

function conformance(name: string, make: () => Pair): void {
  describe(`endpoint conformance: ${name}`, () => {
    const pair = make();
    const { ep, target } = pair;
    const settle = async (): Promise<void> => {
      const f = ep.flush();
      if (f !== undefined) await f;
    };
    afterAll(() => pair.close());

    it('names itself and states its capabilities with units', () => {
      expect(ep.name).toMatch(/^[a-z]+(\/[a-z]+)?$/);
      expect(ep.caps.latency).toBeGreaterThan(0);
      expect(ep.caps.latency).toBeLessThan(1e-2);
      expect(ep.caps.bandwidth).toBeGreaterThan(1e6);
    });

    it('put lands in the peer heap at the offset, for several types and sizes', async () => {
      for (const [src, offset] of [[Float64Array.of(1.5, -2.25, 3e300), 64], [Int32Array.of(7, -8, 9), 4096], [Uint8Array.of(1, 2, 3, 4, 5), 8191], [new Float64Array(300_000).map((_, i) => i * 0.5), 1 << 20]] as const) {
        ep.put(offset, src);
        if (!ep.caps.putCompleteOnReturn) await settle();
        const Ctor = src.constructor as new (b: ArrayBuffer, o: number, n: number) => TypedArray;
        const landed = new Ctor(target, offset, src.length) as unknown as ArrayLike<number>;
        const sent = src as unknown as ArrayLike<number>;
        let same = landed.length === sent.length;
        for (let i = 0; same && i < sent.length; i++) same = Object.is(landed[i], sent[i]);
        expect(same, `${src.constructor.name}(${src.length}) at ${offset}`).toBe(true);
      }
    });

    it('get reads the peer heap at the offset', async () => {
      new Float64Array(target, 256, 4).set([4, 3, 2, 1]);
      const dst = new Float64Array(4);
      const done = ep.get(256, dst);
      if (done !== undefined) await done;
      expect(Array.from(dst)).toEqual([4, 3, 2, 1]);
      const big = new Int32Array(target, 2 << 20, 200_000);
      for (let i = 0; i < big.length; i++) big[i] = i ^ 0x5a5a;
      const into = new Int32Array(200_000);
      const d2 = ep.get(2 << 20, into);
      if (d2 !== undefined) await d2;
      expect(into.every((v, i) => v === (i ^ 0x5a5a))).toBe(true);
    });

    it('map() is the peer heap exactly when it advertises canMap', () => {
      const mem = ep.map();
      if (!ep.caps.canMap) {
        expect(mem).toBeNull();
        return;
      }
      expect(mem).not.toBeNull();
      new Uint8Array(mem!)[12_345] = 77;
      expect(new Uint8Array(target)[12_345]).toBe(77);
      new Uint8Array(target)[12_346] = 78;
      expect(new Uint8Array(mem!)[12_346]).toBe(78);
    });

    it('every atomic on Int32 and BigInt64 elements returns the old value and leaves the new one, when it advertises atomics', async () => {
      const i32 = new Int32Array(target, 512, 1);
      const i64 = new BigInt64Array(target, 520, 1);
      const run = async (op: number, offset: number, dtype: number, a: number | bigint, b: number | bigint): Promise<number | bigint> => await ep.atomic(op as never, dtype, offset, a, b);
      if (!ep.caps.atomics) {
        let err: unknown = null;
        try {
          await run(AtomicOp.FETCH_ADD, 512, dtypeOf(i32), 1, 1);
        } catch (e) {
          err = e;
        }
        expect(isMprunError(err, 'ERR_MPRUN_UNSUPPORTED')).toBe(true);
        return;
      }
      const cases: Array<[number, number | bigint, number | bigint, number | bigint, number | bigint]> = [
        // op, a, b, old, new (starting from 10)
        [AtomicOp.FETCH_ADD, 5, 5, 10, 15],
        [AtomicOp.COMPARE_SWAP, 15, 99, 15, 99],
        [AtomicOp.COMPARE_SWAP, 1, 7, 99, 99],
        [AtomicOp.SWAP, -4, -4, 99, -4],
        [AtomicOp.FETCH, 0, 0, -4, -4],
        [AtomicOp.SET, 42, 42, -4, 42],
      ];
      i32[0] = 10;
      for (const [op, a, b, old, now] of cases) {
        expect(await run(op, 512, dtypeOf(i32), Number(a), Number(b))).toBe(Number(old));
        expect(i32[0]).toBe(Number(now));
      }
      i64[0] = 10n;
      for (const [op, a, b, old, now] of cases) {
        expect(await run(op, 520, dtypeOf(i64), BigInt(a), BigInt(b))).toBe(BigInt(old));
        expect(i64[0]).toBe(BigInt(now));
      }
    });

    it('flush completes (at once or by its promise)', async () => {
      await settle();
    });

    it('send delivers small and large messages whole, in order, with tag and type', () => {
      const small = Float64Array.of(1, 2, 3);
      const msg = encode({ hello: 'peer', n: 5 });
      const packed = Uint8Array.from(msg.payload as Uint8Array);
      const c1 = ep.send(7, dtypeOf(small), small, true);
      const c2 = ep.send(8, DTYPE_MSGPACK, packed, false);
      const big = new Int32Array(250_000).map((_, i) => i * 3);
      const c3 = ep.send(9, dtypeOf(big), big, true);
      const got = pair.received();
      expect([c1.done, c2.done, c3.done]).toEqual([true, true, true]);
      expect(got.map((m) => m.tag)).toEqual([7, 8, 9]);
      expect(got.map((m) => m.dtype)).toEqual([dtypeOf(small), DTYPE_MSGPACK, dtypeOf(big)]);
      expect(new Float64Array(got[0]!.bytes.buffer)).toEqual(small);
      expect(Array.from(got[1]!.bytes)).toEqual(Array.from(packed));
      const arrived = new Int32Array(got[2]!.bytes.buffer);
      expect(arrived.length === big.length && arrived.every((v, i) => v === big[i])).toBe(true);
    });
  });
}

conformance('self', selfPair);
conformance('xpmem/shm (mapped)', () => shmPair('shm'));
conformance('xpmem/cma (copies only)', () => shmPair('cma'));
