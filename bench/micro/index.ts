/**
 * In-process micro-benchmarks (tinybench) of the pieces under the hot paths:
 * reduction kernels (V8 loop against the native kernel), the message codec,
 * and the shared-memory rings.
 *   npx mprun -n 1 bench/micro/index.ts [--time MS] [--json]
 */
import { Bench } from 'tinybench';
import { kernel, opCode } from '../../runtime/coll/ops.js';
import { decodeFrom, encode, packValue } from '../../core/codec.js';
import { ControlSegment } from '../../transports/shm/control.js';
import { NodeQueues, type RecordSink } from '../../transports/shm/queue.js';
import { native } from '../../native/index.js';
import type { TypedArray } from '../../core/types.js';

const args = process.argv.slice(2);
const time = Number(args[args.indexOf('--time') + 1] ?? 200) || 200;
const bench = new Bench({ time, warmupTime: 100 });

// Reduction kernels: the generated V8 loop against the vectorized native one.
for (const n of [16, 1024, 131_072]) {
  const d = new Float64Array(n).fill(1);
  const s = new Float64Array(n).fill(2);
  const js = new Function('d', 's', 'n', 'for (let i = 0; i < n; i++) d[i] += s[i];') as (d: Float64Array, s: Float64Array, n: number) => void;
  const nat = native();
  const code = opCode('sum');
  bench.add(`sum float64 x${n}: V8 loop`, () => js(d, s, n));
  bench.add(`sum float64 x${n}: native kernel`, () => nat.reduce(d, 0, s, 0, n, code));
  bench.add(`sum float64 x${n}: runtime kernel (picks)`, () => kernel(Float64Array, 'sum')(d, 0, s, 0, n));
}

// Codec: typed arrays move raw; other values go through msgpack.
const f64 = new Float64Array(128);
const obj = { step: 17, name: 'halo', list: [1, 2, 3], big: 2n ** 60n };
bench.add('codec: encode Float64Array(128)', () => encode(f64));
bench.add('codec: encode object (msgpack)', () => encode(obj));
const packed = packValue(obj);
bench.add('codec: decode object (msgpack)', () => decodeFrom(0, packed, 0, packed.byteLength));

// Queues: one 8-byte eager message in and out of a rank's queue.
const { segment } = ControlSegment.create(2, 65536, 2);
const a = new NodeQueues(segment, 0);
const b = new NodeQueues(segment, 1);
let sink8 = 0;
const sink: RecordSink = {
  eager: (_r, _o, _t, _d, view: TypedArray, off: number) => void (sink8 += (view as Uint8Array)[off]!),
  first: () => undefined,
  next: () => undefined,
};
const msg = new Uint8Array(8);
const e = encode(msg);
bench.add('ring: send + poll, 8 bytes', () => {
  a.trySendEager(1, 0, e.dtype, msg);
  b.poll(sink);
});

await bench.run();
if (args.includes('--json')) console.log(JSON.stringify(bench.table()));
else console.table(bench.table());
