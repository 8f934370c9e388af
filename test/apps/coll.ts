/**
 * Every collective, every operator on every type it makes sense for, several
 * roots, zero-length buffers and sizes that take many rounds, on the world
 * and on teams from split(), each checked against a serial computation done
 * independently (BigInt arithmetic with wrap-around for integers).
 * Prints "coll ok <rank>".
 */
import { init, REDUCE_OPS, type ReduceOp, type Team, type TypedArray } from 'mprun';
import { check, equal, rejects, throws } from './check.js';

const world = await init();
const { rank, size } = world;

type Ctor = { new (n: number): TypedArray; name: string; BYTES_PER_ELEMENT: number };
const TYPES: Ctor[] = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array] as unknown as Ctor[];
const FLOATS = new Set<Ctor>([Float32Array, Float64Array] as unknown as Ctor[]);
const BIG = new Set<Ctor>([BigInt64Array, BigUint64Array] as unknown as Ctor[]);
const BITS: Record<string, [number, boolean]> = {
  Int8Array: [8, true], Uint8Array: [8, false], Uint8ClampedArray: [8, false], Int16Array: [16, true], Uint16Array: [16, false],
  Int32Array: [32, true], Uint32Array: [32, false], BigInt64Array: [64, true], BigUint64Array: [64, false],
};

/** A deterministic value for (rank, element), with negatives and zeros in the mix. */
function valueOf(T: Ctor, r: number, i: number): number | bigint {
  const x = ((r * 7 + i * 13) % 11) - 3 + (i % 5 === 0 ? 0 : r);
  if (BIG.has(T)) return BigInt(x) * 1000003n;
  if (T === (Float32Array as unknown as Ctor)) return Math.fround(x * 0.75);
  if (T === (Float64Array as unknown as Ctor)) return x * 0.75;
  return x;
}

function fill(T: Ctor, r: number, n: number): TypedArray {
  const a = new T(n);
  for (let i = 0; i < n; i++) (a as unknown as Array<number | bigint>)[i] = valueOf(T, r, i) as never;
  return a;
}

/** The serial result of folding ranks 0..upto with `op`, computed without the runtime's kernels. */
function serial(T: Ctor, op: ReduceOp, n: number, upto: number): Array<number | bigint> {
  return Array.from({ length: n }, (_, i) => serialAt(T, op, i, upto));
}

/**
 * Element i of serial(): the large reductions check some elements only, and
 * folding all 300,001 of them in BigInt arithmetic on every rank took most of
 * this app's minutes at 16 ranks on 2 cores.
 */
function serialAt(T: Ctor, op: ReduceOp, i: number, upto: number): number | bigint {
  const store = new T(1) as unknown as Array<number | bigint>; // wraps and rounds like the arrays do
  store[0] = valueOf(T, 0, i) as never;
  let acc: number | bigint = store[0]!;
  for (let r = 1; r <= upto; r++) {
    store[0] = valueOf(T, r, i) as never;
    const v = store[0]!;
    let next: number | bigint;
    if (BITS[T.name] !== undefined && !FLOATS.has(T)) {
      const [bits, signed] = BITS[T.name]!;
      const a = BigInt(acc);
      const b = BigInt(v);
      let z: bigint;
      switch (op) {
        case 'sum': z = a + b; break;
        case 'prod': z = a * b; break;
        case 'min': z = a < b ? a : b; break;
        case 'max': z = a > b ? a : b; break;
        case 'band': z = a & b; break;
        case 'bor': z = a | b; break;
        case 'bxor': z = a ^ b; break;
        case 'land': z = a !== 0n && b !== 0n ? 1n : 0n; break;
        case 'lor': z = a !== 0n || b !== 0n ? 1n : 0n; break;
      }
      if (T === (Uint8ClampedArray as unknown as Ctor)) z = z < 0n ? 0n : z > 255n ? 255n : z;
      else z = signed ? BigInt.asIntN(bits, z) : BigInt.asUintN(bits, z);
      next = BIG.has(T) ? z : Number(z);
    } else {
      const a = acc as number;
      const b = v as number;
      switch (op) {
        case 'sum': next = a + b; break;
        case 'prod': next = a * b; break;
        case 'min': next = b < a ? b : a; break;
        case 'max': next = b > a ? b : a; break;
        case 'land': next = a !== 0 && b !== 0 ? 1 : 0; break;
        case 'lor': next = a !== 0 || b !== 0 ? 1 : 0; break;
        default: throw new Error(`no ${op} on floats`);
      }
      if (T === (Float32Array as unknown as Ctor)) next = Math.fround(next);
    }
    acc = next;
  }
  return acc;
}

function opsFor(T: Ctor): ReduceOp[] {
  return REDUCE_OPS.filter((op) => !FLOATS.has(T) || !['band', 'bor', 'bxor'].includes(op));
}

/**
 * A team across nodes folds floats in another grouping than team-rank order
 * (O(log p) algorithms), unless MPRUN_COLL_REPRODUCIBLE=1: sums and products
 * of floats then match the serial fold to rounding, not bitwise.
 */
function exactFloats(team: Team): boolean {
  const node = new Set(world.team('shared').worldRanks);
  return process.env.MPRUN_COLL_REPRODUCIBLE === '1' || team.worldRanks.every((w) => node.has(w));
}

/** equal(), or for floats folded in another grouping, equal to a relative tolerance. */
function equalFold(T: Ctor, op: ReduceOp, exact: boolean, got: TypedArray, want: Array<number | bigint>, what: string): void {
  const values = Array.from(got as unknown as ArrayLike<number>);
  if (exact || !FLOATS.has(T) || (op !== 'sum' && op !== 'prod')) return equal(values, want, what);
  const tol = T === (Float32Array as unknown as Ctor) ? 1e-5 : 1e-12;
  equal(values.length, want.length, `${what}: length`);
  values.forEach((v, i) => {
    const w = want[i] as number;
    check(Math.abs(v - w) <= tol * Math.max(1, Math.abs(w)), `${what}: [${i}] got ${v}, expected ${w} (to rounding)`);
  });
}

async function reductions(team: Team, label: string): Promise<void> {
  const n = team.size;
  const me = team.rank;
  const exact = exactFloats(team);
  for (const T of TYPES) {
    for (const op of opsFor(T)) {
      for (const len of [0, 1, 7]) {
        const a = fill(T, me, len);
        const res = await team.allreduce(a, op);
        check(res === a, 'allreduce works in place');
        equalFold(T, op, exact, res, serial(T, op, len, n - 1), `${label} allreduce ${T.name} ${op} len ${len}`);
        const s = await team.scan(fill(T, me, len), op);
        equalFold(T, op, exact, s, serial(T, op, len, me), `${label} scan ${T.name} ${op} len ${len}`);
        const root = (len + 1) % n;
        const rd = await team.reduce(fill(T, me, len), op, root);
        if (me === root) equalFold(T, op, exact, rd!, serial(T, op, len, n - 1), `${label} reduce ${T.name} ${op} to root ${root}`);
        else equal(rd, null, 'reduce returns null off the root');
      }
    }
  }
  // Large: many rounds, and the reduce-scatter path of allreduce.
  for (const T of [Float64Array, Int32Array, BigInt64Array] as unknown as Ctor[]) {
    const len = 300_001;
    // The edges of chunks and rounds, and a sample across the whole array.
    const sample = [0, 1, 4095, 65_537, 150_000, len - 1, ...Array.from({ length: 30 }, (_, k) => 3 + k * 9_973)];
    const big = await team.allreduce(fill(T, me, len), 'sum');
    for (const i of sample) equal((big as unknown as Array<number>)[i], serialAt(T, 'sum', i, n - 1), `${label} large allreduce ${T.name} sum [${i}]`);
    const mx = await team.allreduce(fill(T, me, len), 'max');
    for (const i of [99_999, len - 2, ...sample]) equal((mx as unknown as Array<number>)[i], serialAt(T, 'max', i, n - 1), `${label} large allreduce ${T.name} max [${i}]`);
  }
  // Scalars
  equal(await team.allreduce(me + 1, 'sum'), (n * (n + 1)) / 2, `${label} scalar sum`);
  equal(await team.allreduce(BigInt(me) + 10n, 'max'), BigInt(n - 1) + 10n, `${label} bigint max`);
  equal(await team.allreduce(1 << me % 30, 'bor'), Array.from({ length: n }, (_, r) => 1 << r % 30).reduce((x, y) => x | y, 0), `${label} number bor`);
  equal(await team.scan(2, 'prod'), 2 ** (me + 1), `${label} scalar scan`);
  // A Buffer, and a subclass of a typed array, reduce as their base type, in place.
  const bytes = Buffer.from([me, 1]);
  const summed = await team.allreduce(bytes, 'sum');
  check(summed === bytes && bytes[0] === ((n * (n - 1)) / 2) % 256 && bytes[1] === n % 256, `${label} allreduce of a Buffer`);
  class Samples extends Float64Array {}
  const samples = Samples.of(me, -me);
  check((await team.allreduce(samples, 'max')) === samples && samples[0] === n - 1 && samples[1] === 0, `${label} allreduce of a subclass of Float64Array`);
  equal(await team.reduce(me, 'min', n - 1), me === n - 1 ? 0 : null, `${label} scalar reduce`);
}

async function movement(team: Team, label: string): Promise<void> {
  const n = team.size;
  const me = team.rank;
  // bcast: typed in place from several roots, values, large, empty, and into "nothing"
  for (const root of new Set([0, n - 1, n >> 1])) {
    for (const T of TYPES) {
      const a = me === root ? fill(T, 99, 5) : new T(5);
      const r = await team.bcast(a, root);
      check(r === a, 'bcast of a typed array is in place');
      equal(Array.from(a as unknown as ArrayLike<number>), Array.from(fill(T, 99, 5) as unknown as ArrayLike<number>), `${label} bcast ${T.name} from ${root}`);
    }
    equal(await team.bcast(me === root ? { from: root, list: [1, 'x', null], big: 7n } : undefined, root), { from: root, list: [1, 'x', null], big: 7n }, `${label} bcast value from ${root}`);
    const fresh = await team.bcast(me === root ? Int16Array.of(1, 2, 3) : null, root);
    check(fresh instanceof Int16Array && fresh.length === 3 && fresh[2] === 3, `${label} bcast of a typed array to ranks that pass none`);
  }
  const large = me === 0 ? Float64Array.from({ length: 600_000 }, (_, i) => i * 0.5) : new Float64Array(600_000);
  await team.bcast(large, 0);
  check(large[0] === 0 && large[599_999] === 599_999 * 0.5 && large[333_333] === 333_333 * 0.5, `${label} large bcast`);
  const lv = await team.bcast(me === n - 1 ? 'x'.repeat(3_000_000) : 0, n - 1);
  equal(typeof lv === 'string' ? lv.length : -1, 3_000_000, `${label} large value bcast`);
  await team.bcast(new Uint8Array(0), 0);

  // allgather / gather
  const ag = await team.allgather(Int32Array.of(me, me * 10));
  equal(Array.from(ag), Array.from({ length: n }, (_, r) => [r, r * 10]).flat(), `${label} allgather typed, concatenated`);
  const uneven = await team.allgather(new Float32Array(me).fill(me));
  equal(uneven.length, (n * (n - 1)) / 2, `${label} allgather of unequal lengths`);
  equal(await team.allgather({ r: me }), Array.from({ length: n }, (_, r) => ({ r })), `${label} allgather values`);
  equal(await team.allgather(me % 2 === 0 ? me : `s${me}`), Array.from({ length: n }, (_, r) => (r % 2 === 0 ? r : `s${r}`)), `${label} allgather mixed values`);
  const g = await team.gather(Uint8Array.of(me), n - 1);
  if (me === n - 1) equal(Array.from(g!), Array.from({ length: n }, (_, r) => r), `${label} gather to the last rank`);
  else equal(g, null, 'gather returns null off the root');
  const bigAg = await team.allgather(new Float64Array(200_000).fill(me + 0.5));
  check(bigAg.length === 200_000 * n && bigAg[0] === 0.5 && bigAg[bigAg.length - 1] === n - 0.5, `${label} large allgather`);
  equal((await team.allgather(new Int8Array(0))).length, 0, `${label} allgather of nothing`);
  // Buffers are values, on one node as across nodes: one each, not joined (other members' come as
  // Uint8Arrays across nodes, where collectives carry them as msgpack values).
  const bufs = (await team.allgather(Buffer.from([me, me + 1]))) as unknown as Uint8Array[];
  check(Array.isArray(bufs) && bufs.length === n && bufs.every((b, r) => b instanceof Uint8Array && b.length === 2 && b[0] === r && b[1] === r + 1), `${label} allgather of Buffers`);

  // scatter
  const sroot = n - 1;
  const piece = await team.scatter(me === sroot ? Float64Array.from({ length: 3 * n }, (_, i) => i) : null, sroot);
  equal(Array.from(piece), [3 * me, 3 * me + 1, 3 * me + 2], `${label} scatter typed from ${sroot}`);
  equal(await team.scatter(me === 0 ? Array.from({ length: n }, (_, r) => ({ to: r })) : null, 0), { to: me }, `${label} scatter values`);
  const bigPiece = await team.scatter(me === 0 ? Int32Array.from({ length: 100_000 * n }, (_, i) => i) : null, 0);
  check(bigPiece.length === 100_000 && bigPiece[0] === me * 100_000 && bigPiece[99_999] === me * 100_000 + 99_999, `${label} large scatter`);

  // alltoall
  const at = await team.alltoall(Int32Array.from({ length: 2 * n }, (_, i) => me * 1000 + i));
  equal(Array.from(at), Array.from({ length: n }, (_, src) => [src * 1000 + 2 * me, src * 1000 + 2 * me + 1]).flat(), `${label} alltoall typed`);
  equal(await team.alltoall(Array.from({ length: n }, (_, to) => `${me}->${to}`)), Array.from({ length: n }, (_, src) => `${src}->${me}`), `${label} alltoall values`);
  const bigAt = await team.alltoall(new Uint16Array(50_000 * n).fill(me));
  check(bigAt.length === 50_000 * n && bigAt[0] === 0 && bigAt[bigAt.length - 1] === n - 1, `${label} large alltoall`);
}

// --- the world ------------------------------------------------------------------
for (let k = 0; k < 20; k++) await world.barrier();
await reductions(world, 'world');
await movement(world, 'world');

// --- teams -----------------------------------------------------------------------
const shared = world.team('shared');
equal(shared.size, world.local.size, 'team(shared) is every rank of this node');
equal(await shared.allreduce(1, 'sum'), world.local.size, 'team(shared) allreduce');
check(world.team('world') === world, "team('world') is the world");

const parity = world.split(rank % 2, -rank); // reversed order inside each team
check(parity !== null, 'split returns a team');
const members = Array.from({ length: size }, (_, r) => r).filter((r) => r % 2 === rank % 2).reverse();
equal(parity!.worldRanks, members, 'split orders by key, then by rank');
equal(parity!.rank, members.indexOf(rank), 'rank within the split team');
equal(await parity!.allreduce(rank, 'sum'), members.reduce((a, b) => a + b, 0), 'allreduce over the split team');
await reductions(parity!, 'parity');
await movement(parity!, 'parity');
const none = world.split(rank === 0 ? -1 : 1);
if (rank === 0) equal(none, null, 'a negative color joins no team');
else equal(none!.size, size - 1, 'the others form a team');
const nested = parity!.split(parity!.rank < 2 ? 0 : 1);
check(nested !== null && nested.size === (parity!.rank < 2 ? Math.min(2, parity!.size) : parity!.size - 2) && (await nested.allreduce(1, 'sum')) === nested.size, 'split of a split');
// Teams work concurrently with the world: interleaved collectives on two teams.
const [w, p] = await Promise.all([world.allreduce(1, 'sum'), parity!.allreduce(1, 'sum')]);
equal([w, p], [size, members.length], 'collectives on two teams at once');
const queued = await Promise.all([world.bcast(rank === 0 ? 'first' : null, 0), world.bcast(rank === 0 ? 'second' : null, 0)]);
equal(queued, ['first', 'second'], 'collectives on one team run in call order');

// --- bad input ---------------------------------------------------------------------
await rejects(() => world.allreduce(new Float64Array(1), 'band'), TypeError, 'bitwise reduction on floats');
await rejects(() => world.allreduce(new (class Samples extends Float32Array {})(1), 'bor'), TypeError, 'bitwise reduction on a subclass of Float32Array');
await rejects(() => world.allreduce(2n ** 63n, 'max'), RangeError, 'a bigint past 64 bits');
await rejects(() => world.allreduce(new Float64Array(1), 'avg' as ReduceOp), TypeError, 'unknown operator');
await rejects(() => world.bcast(1, size), RangeError, 'bcast root out of range');
await rejects(() => world.reduce(1, 'sum', -1), RangeError, 'reduce root out of range');
await rejects(() => world.allreduce('x' as unknown as number, 'sum'), TypeError, 'reduction of a string');
// Argument errors reject before the collective starts (the root alone fails here, publishing nothing).
if (size > 1 && rank === 0) await rejects(() => world.scatter(new Float64Array(size + 1), 0), RangeError, 'scatter of an uneven typed array');
if (size !== 1) await rejects(() => world.alltoall([1]), TypeError, 'alltoall of the wrong number of values');
throws(() => world.split(1.5), TypeError, 'fractional color');

console.log(`coll ok ${rank}`);
await world.finalize();
