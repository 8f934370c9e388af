import { spawn, spawnSync } from 'node:child_process';
import { closeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ControlSegment, WAKE_BITS, controlLayout } from './control.js';
import { NodeQueues, RECV_EMPTY, RECV_NOT_THIS, recordBytes, type RecordSink } from './queue.js';
import { decodeFrom, encode, allocate, finish } from '../../core/codec.js';
import type { TypedArray } from '../../core/types.js';
import { packageRoot } from '../../native/index.js';

function pair(ringBytes = 4096, nlocal = 2) {
  const { segment } = ControlSegment.create(nlocal, ringBytes, 2);
  return { segment, a: new NodeQueues(segment, 0), b: new NodeQueues(segment, 1) };
}

class Collect implements RecordSink {
  got: Array<{ source: number; tag: number; data: unknown; origin?: number }> = [];
  eager(source: number, origin: number, tag: number, dtype: number, view: TypedArray, off: number, len: number): void {
    this.got.push(origin >= 0 ? { source, tag, data: decodeFrom(dtype, view, off, len), origin } : { source, tag, data: decodeFrom(dtype, view, off, len) });
  }
  /** Per producer, the message being reassembled from its fragments. */
  partial = new Map<number, { tag: number; dtype: number; dst: TypedArray; filled: number }>();
  first(source: number, _origin: number, tag: number, dtype: number, total: number, view: TypedArray, off: number, len: number): void {
    expect(this.partial.has(source)).toBe(false);
    this.partial.set(source, { tag, dtype, dst: allocate(dtype, total), filled: 0 });
    this.next(source, view, off, len);
  }
  next(source: number, view: TypedArray, off: number, len: number): void {
    const p = this.partial.get(source)!;
    const bpe = view.BYTES_PER_ELEMENT;
    (p.dst as Float64Array).set((view as Float64Array).subarray(off / bpe, (off + len) / bpe), p.filled / bpe);
    p.filled += len;
    if (p.filled === p.dst.byteLength) {
      this.got.push({ source, tag: p.tag, data: finish(p.dtype, p.dst) });
      this.partial.delete(source);
    }
  }
}

describe('shared-memory message queues', () => {
  it('delivers records in order across many wraps of the ring, with varied sizes', () => {
    const { a, b } = pair(4096);
    const sink = new Collect();
    let sent = 0;
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    const expected: number[][] = [];
    for (let round = 0; round < 2000; round++) {
      const n = rnd() % 200; // up to 800 bytes: many paddings at the ring's end
      const payload = Int32Array.from({ length: n }, (_, i) => sent * 1000 + i);
      const e = encode(payload);
      if (!a.trySendEager(1, sent, e.dtype, e.payload)) {
        // full: the consumer drains everything, then the send must fit
        while (b.poll(sink));
        expect(a.trySendEager(1, sent, e.dtype, e.payload)).toBe(true);
      }
      expected.push(Array.from(payload));
      sent++;
      if (rnd() % 3 === 0) b.poll(sink);
    }
    while (b.poll(sink));
    expect(sink.got.length).toBe(sent);
    sink.got.forEach((m, k) => {
      expect(m.tag).toBe(k);
      expect(m.source).toBe(0);
      expect(Array.from(m.data as Int32Array)).toEqual(expected[k]);
    });
  });

  it('says full instead of overwriting unread records', () => {
    const { a, b } = pair(4096);
    const msg = new Float64Array(100); // 832-byte records (whole cells)
    expect(recordBytes(msg.byteLength)).toBe(832);
    let n = 0;
    while (a.trySendEager(1, n, encode(msg).dtype, msg)) n++;
    expect(n).toBe(4); // 4 x 832 of 4096
    expect(b.pending()).toBe(true);
    const sink = new Collect();
    expect(b.poll(sink)).toBe(true);
    expect(b.poll(sink)).toBe(true); // room for one more, and the padding at the ring's end
    expect(a.trySendEager(1, n, 9, msg)).toBe(true);
  });

  it('stale payload bytes of an earlier lap never pass for a record', () => {
    const { a, b } = pair(4096);
    const sink = new Collect();
    // Fill the ring with payloads full of small integers that look like sequence numbers.
    const bait = Int32Array.from({ length: 250 }, (_, i) => i + 1);
    for (let k = 0; k < 50; k++) {
      expect(a.trySendEager(1, k, encode(bait).dtype, bait)).toBe(true);
      expect(b.poll(sink)).toBe(true);
      expect(b.poll(sink)).toBe(false);
    }
    expect(sink.got.length).toBe(50);
  });

  it('streams large messages as fragments, interleaved with the consumer', () => {
    const { a, b } = pair(4096);
    const sink = new Collect();
    for (const T of [Float64Array, Int16Array, Uint8Array, BigInt64Array] as const) {
      const big = new T(10_001 - (10_001 % 8));
      for (let i = 0; i < big.length; i++) (big as Float64Array)[i] = (T === BigInt64Array ? BigInt(i) : i % 100) as number;
      const step = a.fragmentBytes;
      expect(step % 8).toBe(0);
      const dtype = encode(big).dtype;
      for (let off = 0; off < big.byteLength; off += step) {
        const len = Math.min(step, big.byteLength - off);
        while (!a.trySendFragment(1, 5, dtype, big, off, len)) expect(b.poll(sink)).toBe(true);
      }
      while (b.poll(sink));
      expect(sink.got.pop()!.data).toEqual(big);
    }
  });

  it('carries every payload type', () => {
    const { a, b } = pair(65536);
    const sink = new Collect();
    const values: unknown[] = [
      new Int8Array([-1, 2]), new Uint8Array([1, 2, 3]), new Uint8ClampedArray([255]), new Int16Array([-300]), new Uint16Array([60000]),
      new Int32Array([-5]), new Uint32Array([4e9]), new Float32Array([1.5]), new Float64Array([Math.PI]), new BigInt64Array([-2n]),
      new BigUint64Array([2n ** 63n]), Buffer.from('hi'), new DataView(new ArrayBuffer(3)), { a: [1, 'x'] }, 'text', 42, null, 2n ** 70n,
    ];
    for (const [k, v] of values.entries()) {
      const e = encode(v);
      expect(a.trySendEager(1, k, e.dtype, e.payload.slice())).toBe(true);
    }
    while (b.poll(sink));
    expect(sink.got.map((m) => m.data)).toEqual(values);
    expect(Buffer.isBuffer(sink.got[11]!.data)).toBe(true);
  });

  it('relays from the node agent (the gateway) with the origin rank of each record', () => {
    const { segment, b } = pair(4096);
    const gateway = new NodeQueues(segment, segment.gateway);
    const sink = new Collect();
    for (const origin of [5, 1_000_000, 0]) {
      const e = encode(Int32Array.of(origin));
      expect(gateway.trySendEager(1, 3, e.dtype, e.payload, origin)).toBe(true);
    }
    while (b.poll(sink));
    expect(sink.got.map((m) => [m.source, m.origin, (m.data as Int32Array)[0]])).toEqual([
      [segment.gateway, 5, 5],
      [segment.gateway, 1_000_000, 1_000_000],
      [segment.gateway, 0, 0],
    ]);
  });

  it('takes records from many producers, each in its own order, with interleaved fragments reassembled', () => {
    const nlocal = 6;
    const { segment } = ControlSegment.create(nlocal, 8192, 2);
    const consumer = new NodeQueues(segment, 0);
    const producers = Array.from({ length: nlocal + 1 }, (_, p) => new NodeQueues(segment, p)).slice(1); // ranks 1-5 and the gateway
    const sink = new Collect();
    let seed = 11;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    // Per producer, a script of messages: small eager ones and large ones that stream as fragments.
    const scripts = producers.map((_, k) => Array.from({ length: 60 }, (_, i) => {
      const n = rnd() % 5 === 0 ? 600 + (rnd() % 900) : rnd() % 40;
      return Int32Array.from({ length: n }, (_, j) => k * 1_000_000 + i * 1000 + j);
    }));
    const sent = producers.map(() => ({ i: 0, m: null as null | { tag: number; dtype: number; payload: TypedArray; offset: number } }));
    let polls = 0;
    for (let spin = 0; spin < 1_000_000; spin++) {
      const k = rnd() % producers.length;
      const s = sent[k]!;
      if (s.i < scripts[k]!.length) {
        const payload = scripts[k]![s.i]!;
        s.m ??= { tag: s.i, dtype: encode(payload).dtype, payload, offset: 0 };
        // The largest message is more than a fragment: it streams (eager limit 512 bytes here).
        if (producers[k]!.tryPost(0, s.m, 512, k === producers.length - 1 ? 77 : -1)) {
          s.i++;
          s.m = null;
        }
      }
      if (rnd() % 4 === 0 && consumer.poll(sink)) polls++;
      if (sent.every((x, j) => x.i === scripts[j]!.length)) break;
    }
    while (consumer.poll(sink)) polls++;
    expect(sent.every((x, j) => x.i === scripts[j]!.length)).toBe(true);
    for (const [k] of producers.entries()) {
      const mine = sink.got.filter((m) => m.source === k + 1);
      expect(mine.map((m) => m.tag)).toEqual(scripts[k]!.map((_, i) => i));
      mine.forEach((m, i) => expect(Array.from(m.data as Int32Array)).toEqual(Array.from(scripts[k]![i]!)));
    }
    expect(polls).toBeGreaterThan(sink.got.length); // fragments are records of their own
    expect(sink.got.filter((m) => m.source === nlocal).every((m) => m.origin === 77 || m.origin === undefined)).toBe(true);
  });

  it('a producer that finds the queue full is woken when the consumer makes room', () => {
    const { segment, a, b } = pair(4096, 2);
    const door = segment.doorIndex(0);
    const msg = new Float64Array(100);
    while (a.trySendEager(1, 0, encode(msg).dtype, msg));
    // rank 0 would now sleep for messages
    Atomics.store(segment.i32, segment.sleepingIndex(0), 1);
    const before = Atomics.load(segment.i32, door);
    expect(b.poll(new Collect())).toBe(true);
    expect(Atomics.load(segment.i32, door)).toBe(before + 1);
    expect(Atomics.load(segment.i32, segment.wantIndex(1))).toBe(0);
  });

  it('the native receive takes the awaited eager message at the head straight into the buffer, and leaves any other record to poll()', () => {
    const { segment, a, b } = pair(4096, 3);
    b.worldRanks([10, 11, 12]);
    const gateway = new NodeQueues(segment, segment.gateway);
    const c = new NodeQueues(segment, 2);
    const f64 = encode(new Float64Array(1)).dtype;
    const i32 = encode(new Int32Array(1)).dtype;
    const out = new Int32Array(2);
    const into = new Float64Array(4);
    // Nothing there: EMPTY, after polling for the time given.
    const t0 = performance.now();
    expect(b.recvInto(into, f64, -1, -1, 2e6, 0, out)).toBe(RECV_EMPTY);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1.5);
    // A match by source and tag, by ANY_SOURCE / ANY_TAG, from the agent (its origin is the source).
    expect(a.trySendEager(1, 7, f64, Float64Array.of(1.5, 2.5))).toBe(true);
    expect(b.recvInto(into, f64, 10, 7, 0, 0, out)).toBe(16);
    expect([...into.subarray(0, 2), ...out]).toEqual([1.5, 2.5, 10, 7]);
    expect(gateway.trySendEager(1, 3, f64, Float64Array.of(-1), 44)).toBe(true);
    expect(b.recvInto(into, f64, -1, -1, 0, 0, out)).toBe(8);
    expect([into[0], ...out]).toEqual([-1, 44, 3]);
    // Records this receive does not take stay at the head, in order, for poll(): another tag, another
    // source, another type, too long, the runtime's own tag, a fragment.
    const others: Array<() => boolean> = [
      () => a.trySendEager(1, 8, f64, Float64Array.of(1)),
      () => c.trySendEager(1, 7, f64, Float64Array.of(2)),
      () => a.trySendEager(1, 7, i32, Int32Array.of(3)),
      () => a.trySendEager(1, 7, f64, new Float64Array(5)),
      () => a.trySendEager(1, 0x40000000, f64, Float64Array.of(4)),
      () => a.trySendFragment(1, 7, f64, new Float64Array(400), 0, 1600),
    ];
    const sink = new Collect();
    for (const send of others) {
      expect(send()).toBe(true);
      expect(b.recvInto(into, f64, 10, 7, 0, 0, out)).toBe(RECV_NOT_THIS);
      expect(b.poll(sink)).toBe(true);
    }
    expect(sink.got.map((m) => [m.source, m.tag])).toEqual([[0, 8], [2, 7], [0, 7], [0, 7], [0, 0x40000000]]);
    expect(sink.partial.has(0)).toBe(true); // the fragment's first record went to poll()
  });

  it('a record whose sizes another process damaged is refused by poll() and the native receive, before it steers a copy', () => {
    const f64 = encode(new Float64Array(1)).dtype;
    const out = new Int32Array(2);
    const into = new Float64Array(4);
    // Each damage to the record at the head of rank 1's ring: its size, its payload length, and a padding record's size.
    const damages: Array<[string, (i32: Int32Array, w: number) => void]> = [
      ['a size past the ring', (i32, w) => void (i32[w] = 8192)],
      ['a size not of whole cells', (i32, w) => void (i32[w] = 100)],
      ['a payload longer than the record', (i32, w) => void (i32[w + 3] = 4000)],
      ['a negative payload', (i32, w) => void (i32[w + 3] = -8)],
      ['padding of the wrong size', (i32, w) => void (i32[w] = -64)],
    ];
    for (const [what, damage] of damages) {
      for (const via of ['poll', 'native'] as const) {
        const { segment, a, b } = pair(4096, 2);
        b.worldRanks([10, 11]);
        expect(a.trySendEager(1, 7, f64, Float64Array.of(1.5))).toBe(true);
        damage(segment.i32, segment.ringOffset(1) >> 2);
        const take = via === 'poll' ? () => b.poll(new Collect()) : () => b.recvInto(into, f64, -1, -1, 0, 0, out);
        expect(take, `${what}, ${via}`).toThrow(/local rank 1's message queue holds a damaged (record|padding)/);
      }
    }
  });

  it('small messages of every element type pass through the staging arrays both ways (no typed array handed to native code)', () => {
    const { a, b } = pair(4096, 2);
    b.worldRanks([0, 1]);
    const out = new Int32Array(2);
    const ctors = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array];
    for (const [k, Ctor] of ctors.entries()) {
      // 64 bytes (the staging array's whole length) and one element.
      for (const n of [64 / Ctor.BYTES_PER_ELEMENT, 1]) {
        const msg = new Ctor(n) as TypedArray;
        for (let i = 0; i < n; i++) (msg as unknown as Array<number | bigint>)[i] = msg instanceof BigInt64Array || msg instanceof BigUint64Array ? BigInt(k * 10 + i + 1) : k * 10 + i + 1;
        const dtype = encode(msg).dtype;
        expect(a.trySendEager(1, 100 + k, dtype, msg)).toBe(true);
        const into = new Ctor(n) as TypedArray;
        out.fill(-9);
        expect(b.recvInto(into, dtype, 0, 100 + k, 0, 0, out)).toBe(msg.byteLength);
        expect(into).toEqual(msg);
        expect([...out]).toEqual([0, 100 + k]);
      }
    }
    // A receive that takes nothing leaves the caller's source and tag alone.
    out.fill(-9);
    expect(b.recvInto(new Float64Array(1), encode(new Float64Array(1)).dtype, -1, -1, 0, 0, out)).toBe(RECV_EMPTY);
    expect([...out]).toEqual([-9, -9]);
  });

  it('native sends and receives interleave with the TypeScript ones over many laps, padding included', () => {
    const { a, b } = pair(4096, 2);
    b.worldRanks([0, 1]);
    const f64 = encode(new Float64Array(1)).dtype;
    const into = new Float64Array(64);
    const out = new Int32Array(2);
    const sink = new Collect();
    let seq = 0;
    for (let k = 0; k < 400; k++) {
      // Lengths that do not divide the ring: records wrap with padding at its end.
      const msg = Float64Array.from({ length: 1 + (k % 37) }, (_, i) => k * 100 + i);
      expect(a.trySendEager(1, k, f64, msg)).toBe(true);
      if (k % 3 === 0) {
        expect(b.poll(sink)).toBe(true);
        expect(sink.got.at(-1)!.data).toEqual(msg);
      } else {
        expect(b.recvInto(into, f64, 0, k, 0, 0, out)).toBe(msg.byteLength);
        expect(Array.from(into.subarray(0, msg.length))).toEqual(Array.from(msg));
      }
      seq++;
      expect(b.pending()).toBe(false);
    }
    expect(seq).toBe(400);
  });

  it('the control segment grows linearly in the ranks of a node (issue 13: 4 GiB of pair rings at 255 ranks)', () => {
    const ring = 256 * 1024;
    const size = (n: number): number => controlLayout(n, ring, 32).total;
    // Per participant: one queue, its control lines, and its block (a line per team slot).
    const per = ring + 128 + 64 * 33;
    for (const n of [1, 8, 64, 128, 255, 1024]) expect(size(n)).toBeLessThanOrEqual(3 * 4096 + per * (n + 1));
    expect(size(1024) - size(512)).toBeLessThanOrEqual(per * 512 + 8192);
    expect(size(255)).toBeLessThan(72 * 1024 ** 2); // 256 queues of 256K, and the participant blocks
  });
});

describe('the native receive asleep on the doorbell (a synchronous receive)', () => {
  /** Runs `body` in another process that maps this control segment (its fd as fd 3), `delayMs` after it starts. */
  function peer(fd: number, delayMs: number, body: string) {
    const dist = join(packageRoot, 'dist');
    const script = `
      const { ControlSegment } = await import(${JSON.stringify(join(dist, 'transports', 'shm', 'control.js'))});
      const { NodeQueues } = await import(${JSON.stringify(join(dist, 'transports', 'shm', 'queue.js'))});
      const segment = ControlSegment.open(3);
      await new Promise((r) => setTimeout(r, ${delayMs}));
      ${body}
      segment.unmap();
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise<string>((resolve) => child.on('exit', (code) => resolve(`exit ${code} ${stderr}`)));
  }

  it('sleeps (no CPU) for its doze after the poll; a message from another process wakes it at once; so does the job aborting', async () => {
    const { segment, fd } = ControlSegment.create(2, 4096, 2);
    try {
      const b = new NodeQueues(segment, 1);
      b.worldRanks([0, 1]);
      const f64 = encode(new Float64Array(1)).dtype;
      const out = new Int32Array(2);
      const into = new Float64Array(1);
      // Nothing comes: EMPTY once the doze is over, having slept through it.
      let cpu = process.cpuUsage();
      let t0 = performance.now();
      expect(b.recvInto(into, f64, -1, -1, 0, 60e6, out)).toBe(RECV_EMPTY);
      const slept = performance.now() - t0;
      cpu = process.cpuUsage(cpu);
      expect(slept).toBeGreaterThanOrEqual(55);
      expect((cpu.user + cpu.system) / 1000).toBeLessThan(slept / 2);
      expect(Atomics.load(segment.i32, segment.sleepingIndex(1)) & WAKE_BITS).toBe(0);
      // Local rank 0 sends 300 ms after it starts, into a doze of 20 s: taken as soon as it is there.
      const sent = peer(fd, 300, 'if (!new NodeQueues(segment, 0).trySendEager(1, 5, ' + f64 + ', Float64Array.of(4.5))) process.exit(3);');
      t0 = performance.now();
      expect(b.recvInto(into, f64, 0, 5, 0, 20e9, out)).toBe(8);
      expect(performance.now() - t0).toBeLessThan(10_000);
      expect([into[0], ...out]).toEqual([4.5, 0, 5]);
      expect(await sent).toBe('exit 0 ');
      // The job aborts (the launcher's abort rings every rank): a doze of 20 s ends at once, EMPTY.
      const aborted = peer(fd, 300, "segment.abort('rank 0 failed');");
      t0 = performance.now();
      expect(b.recvInto(into, f64, -1, -1, 0, 20e9, out)).toBe(RECV_EMPTY);
      expect(performance.now() - t0).toBeLessThan(10_000);
      expect(segment.aborted()).toBe(true);
      expect(await aborted).toBe('exit 0 ');
    } finally {
      segment.unmap();
      closeSync(fd);
    }
  });
  it('a ringer preempted between moving the door and clearing the sleep it saw does not clear the next sleep', async () => {
    const { segment, fd } = ControlSegment.create(2, 4096, 2);
    try {
      const b = new NodeQueues(segment, 1);
      b.worldRanks([0, 1]);
      const f64 = encode(new Float64Array(1)).dtype;
      const out = new Int32Array(2);
      const into = new Float64Array(1);
      // The peer plays two ringers and a sender while this rank dozes for a message: ringer A
      // moves the door and is preempted; ringer B rings in full (this rank wakes, finds nothing,
      // and sleeps again); A resumes with the sleep it saw; then a message comes, rung by the
      // native queue. Before the sleeping word had a generation, A cleared the second sleep (and
      // woke the rank only if it was in its futex wait by then): when it was not, the message's
      // ring found nobody asleep and the rank slept to the end of its doze.
      const body = `
        const i32 = segment.i32, word = segment.sleepingIndex(1);
        const asleepOtherThan = (w) => {
          for (const end = Date.now() + 3000; Date.now() < end; ) { const s = Atomics.load(i32, word); if ((s & 0xff) !== 0 && s !== w) return s; }
          process.exit(5); // no new sleep published
        };
        const stale = asleepOtherThan(undefined);
        Atomics.add(i32, segment.doorIndex(1), 1);
        segment.ring(1, 1);
        asleepOtherThan(stale);
        segment.finishRing(1, stale);
        if ((Atomics.load(i32, word) & 0xff) === 0) process.exit(4); // the second sleep cleared
        if (!new NodeQueues(segment, 0).trySendEager(1, 5, ${f64}, Float64Array.of(2.5))) process.exit(3);
        process.stderr.write('sent at ' + (performance.timeOrigin + performance.now()));`;
      const rung = peer(fd, 100, body);
      // Dozes of at most 2.1 s each (the staged call's int32 nanoseconds), until the message comes.
      let got = RECV_EMPTY;
      for (const end = performance.now() + 20_000; got === RECV_EMPTY && performance.now() < end; ) got = b.recvInto(into, f64, 0, 5, 0, 2e9, out);
      const receivedAt = performance.timeOrigin + performance.now();
      expect(got).toBe(8);
      expect(into[0]).toBe(2.5);
      const [status, sentAt] = (await rung).split(' sent at ');
      expect(status).toBe('exit 0');
      expect(receivedAt - Number(sentAt)).toBeLessThan(1_000);
    } finally {
      segment.unmap();
      closeSync(fd);
    }
  });
});

describe('the native staged calls', () => {
  it('hold their queue: called after the binding and its handle are collected, they still reach the queue', () => {
    // In a child with --expose-gc: only sendStaged (and the arrays it reads) kept, the binding
    // and its handle dropped and collected; the External's finalizer would free the native
    // queue under the function if the function did not hold it.
    const dist = join(packageRoot, 'dist');
    const script = `
      const { native } = await import(${JSON.stringify(join(dist, 'native', 'index.js'))});
      const { ControlSegment } = await import(${JSON.stringify(join(dist, 'transports', 'shm', 'control.js'))});
      const { NodeQueues } = await import(${JSON.stringify(join(dist, 'transports', 'shm', 'queue.js'))});
      const { dtypeOf } = await import(${JSON.stringify(join(dist, 'core', 'codec.js'))});
      const { segment } = ControlSegment.create(2, 4096, 2);
      const per = (f) => Int32Array.from({ length: 2 }, (_, r) => f(r));
      // The arrays the native queue points into stay the caller's to keep (NodeQueues keeps them).
      const stage = new ArrayBuffer(64), out = new Int32Array(2), args = new Int32Array(6), state = new Int32Array(1), headSeen = new Int32Array(2);
      let binding = native().queueOpen(segment.i32, 0, segment.ringBytes, per((r) => segment.ringOffset(r)), per((r) => segment.tailIndex(r)), per((r) => segment.headIndex(r)), per((r) => segment.wantIndex(r)), per((r) => segment.sleepingIndex(r)), per((r) => segment.doorIndex(r)), headSeen, state, stage, out, args);
      const send = binding.sendStaged;
      const held = send.handle === binding.handle && !Reflect.deleteProperty(send, 'handle') && send.handle === binding.handle;
      binding = null;
      for (let i = 0; i < 5; i++) { globalThis.gc(); await new Promise((r) => setImmediate(r)); }
      new Float64Array(stage)[0] = 42.5;
      args.set([1, 7, dtypeOf(new Float64Array(1)), -1, 8]); // dest 1, tag 7, one float64, no origin
      const sent = send();
      const got = [];
      new NodeQueues(segment, 1).poll({ eager: (source, origin, tag, dtype, view, off) => got.push(source, tag, view[off / 8]) });
      console.log(JSON.stringify({ held, sent, got, kept: [headSeen.length, state.length, out.length] }));
      segment.unmap();
    `;
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ held: true, sent: true, got: [0, 7, 42.5], kept: [2, 1, 2] });
  });
});
