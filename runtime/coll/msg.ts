/**
 * Collectives of teams that span nodes: hierarchical, over the runtime's own
 * point-to-point messages (tags from INTERNAL_TAG up, never matched by user
 * receives). Within a node the messages go through the shared-memory rings;
 * between nodes each node sends once, through its leader, over the network:
 *
 *   gather to a root: members send to their node's leader (the root itself on
 *   the root's node), leaders send their node's bundle to the root;
 *   broadcast: the root sends to every other node's leader and to its node's
 *   members, leaders to theirs.
 *
 * Reductions gather the contributions at one rank and fold them in team-rank
 * order, as ShmCollectives does, so every member gets bitwise the same result
 * whatever the placement. Every contribution carries what its member called
 * (kind, type, operator, root, length): a member that called something else
 * fails the job with "collective mismatch" instead of a hang.
 *
 * Same generator protocol as ShmCollectives: the Team drives these
 * asynchronously, or synchronously for split() (messages always arrive through
 * rings, so a synchronous wait sees them).
 */
import { allocate, DTYPE_MSGPACK, dtypeOf, finish } from '../../core/codec.js';
import { MprunError } from '../../core/errors.js';
import { INTERNAL_TAG, type Messenger } from '../p2p.js';
import type { TypedArray } from '../../core/types.js';
import { WAKE_MESSAGE } from '../../transports/shm/control.js';
import { bytesOf, decodePart, isTyped, KIND, typeName, type CollectiveEngine, type Part, type Ready, type Steps } from './shm.js';
import { kernel, opCode, type ReduceOp } from './ops.js';

export interface MsgTeamLayout {
  me: number;
  size: number;
  worldRanks: readonly number[];
  /** The node index of each member. */
  nodes: readonly number[];
  slot: number;
  messenger(): Messenger;
}

/** What a member says it called, checked by whoever gathers its contribution. */
interface Call {
  k: number;
  d?: number;
  o?: number;
  r?: number;
  n?: number;
}

interface Contribution {
  c: Call;
  v: unknown;
}

const KIND_NAME = Object.fromEntries(Object.entries(KIND).map(([k, v]) => [v, k])) as Record<number, string>;
const PHASES = 4;

export class MsgCollectives implements CollectiveEngine {
  readonly #t: MsgTeamLayout;
  /** Members by node, each list in team-rank order. */
  readonly #groups = new Map<number, number[]>();
  #count = 0;

  constructor(t: MsgTeamLayout) {
    this.#t = t;
    t.nodes.forEach((n, r) => {
      const g = this.#groups.get(n);
      if (g === undefined) this.#groups.set(n, [r]);
      else g.push(r);
    });
  }

  /** Tags of the next collective's phases. */
  #next(): number {
    const c = this.#count++;
    return INTERNAL_TAG + this.#t.slot * 0x100000 + ((c * PHASES) & 0xfffff);
  }

  /** The leader of node `n` for a collective rooted at `root`: the root on its node, else the first member. */
  #leader(n: number, root: number): number {
    return this.#t.nodes[root] === n ? root : this.#groups.get(n)![0]!;
  }

  #send(to: number, tag: number, value: unknown): void {
    this.#t.messenger().sendInternal(this.#t.worldRanks[to]!, value, tag);
  }

  *#recv(from: number, tag: number): Steps<unknown> {
    const ms = this.#t.messenger();
    const src = this.#t.worldRanks[from]!;
    let m = ms.takeInternal(src, tag);
    if (m === null) {
      const ready: Ready = () => (m = ms.takeInternal(src, tag)) !== null;
      ready.wake = WAKE_MESSAGE;
      while (m === null) yield ready;
    }
    return m!.data;
  }

  #mismatch(j: number, what: string): MprunError {
    const t = this.#t;
    return new MprunError('ERR_MPRUN_COLLECTIVE_MISMATCH', `collective mismatch: team rank ${j} (world rank ${t.worldRanks[j]}) ${what} (seen by team rank ${t.me}, world rank ${t.worldRanks[t.me]})`, { rank: t.worldRanks[j]! });
  }

  #check(j: number, got: Call, want: Call): void {
    if (got.k !== want.k) throw this.#mismatch(j, `called ${KIND_NAME[got.k] ?? `collective #${got.k}`} where this rank called ${KIND_NAME[want.k]}`);
    if (want.r !== undefined && got.r !== want.r) throw this.#mismatch(j, `gave root ${got.r}, this rank ${want.r}`);
    if (want.d !== undefined && got.d !== want.d) throw this.#mismatch(j, `passed ${typeName(got.d ?? DTYPE_MSGPACK)}, this rank ${typeName(want.d)}`);
    if (want.o !== undefined && got.o !== want.o) throw this.#mismatch(j, `reduces with operator #${got.o}, this rank #${want.o}`);
    if (want.n !== undefined && got.n !== want.n) throw this.#mismatch(j, `passed ${got.n} bytes, this rank ${want.n}`);
  }

  /** Gathers every member's contribution at `root` (team-rank order there; null elsewhere). */
  *#gatherTo(tag: number, root: number, mine: Contribution): Steps<Contribution[] | null> {
    const { me, nodes } = this.#t;
    const node = nodes[me]!;
    const leader = this.#leader(node, root);
    if (me !== leader) {
      this.#send(leader, tag, [[me, mine]]);
      return null;
    }
    const bundle: Array<[number, Contribution]> = [[me, mine]];
    for (const j of this.#groups.get(node)!) {
      if (j === me) continue;
      bundle.push(...((yield* this.#recv(j, tag)) as Array<[number, Contribution]>));
    }
    if (me !== root) {
      this.#send(root, tag, bundle);
      return null;
    }
    for (const n of this.#groups.keys()) {
      if (n === node) continue;
      bundle.push(...((yield* this.#recv(this.#leader(n, root), tag)) as Array<[number, Contribution]>));
    }
    const all: Contribution[] = new Array(this.#t.size);
    for (const [j, c] of bundle) all[j] = c;
    for (let j = 0; j < all.length; j++) this.#check(j, all[j]!.c, mine.c);
    return all;
  }

  /** Broadcasts `value` from `root`; returns what the root sent. */
  *#bcastFrom(tag: number, root: number, value: unknown): Steps<unknown> {
    const { me, nodes } = this.#t;
    const node = nodes[me]!;
    const leader = this.#leader(node, root);
    let v = value;
    if (me === root) {
      for (const n of this.#groups.keys()) if (n !== node) this.#send(this.#leader(n, root), tag, v);
    } else {
      v = yield* this.#recv(me === leader ? root : leader, tag);
    }
    if (me === leader) for (const j of this.#groups.get(node)!) if (j !== me) this.#send(j, tag, v);
    return v;
  }

  *barrier(): Steps<void> {
    const tag = this.#next();
    yield* this.#gatherTo(tag, 0, { c: { k: KIND.barrier }, v: null });
    yield* this.#bcastFrom(tag + 1, 0, null);
  }

  *bcast(data: unknown, root: number): Steps<unknown> {
    const tag = this.#next();
    const got = yield* this.#bcastFrom(tag, root, this.#t.me === root ? [{ k: KIND.bcast, r: root }, data] : null);
    const [call, value] = got as [Call, unknown];
    if (this.#t.me === root) return data;
    this.#check(root, call, { k: KIND.bcast, r: root });
    if (isTyped(data)) {
      if (!isTyped(value) || value.constructor !== data.constructor || value.byteLength !== data.byteLength) {
        throw this.#mismatch(root, `broadcasts ${isTyped(value) ? `${value.byteLength} bytes of ${value.constructor.name}` : 'a msgpack value'} into this rank's ${data.constructor.name} of ${data.byteLength} bytes`);
      }
      (data as Float64Array).set(value as Float64Array);
      return data;
    }
    return value;
  }

  *gather(value: unknown, root: number | null): Steps<unknown> {
    const tag = this.#next();
    const kind = root === null ? KIND.allgather : KIND.gather;
    const call: Call = root === null ? { k: kind } : { k: kind, r: root };
    const all = yield* this.#gatherTo(tag, root ?? 0, { c: call, v: value });
    let result: unknown = all === null ? null : assemble(all.map((c) => c.v));
    if (root === null) result = yield* this.#bcastFrom(tag + 1, 0, result);
    return result;
  }

  *scatter(parts: Part[] | null, root: number): Steps<unknown> {
    const tag = this.#next();
    const { me, size } = this.#t;
    if (me === root) {
      for (let j = 0; j < size; j++) if (j !== me) this.#send(j, tag, [{ k: KIND.scatter, r: root }, parts![j]!.dtype, parts![j]!.bytes]);
      return decodePart(parts![me]!.dtype, parts![me]!.bytes);
    }
    const [call, dtype, bytes] = (yield* this.#recv(root, tag)) as [Call, number, Uint8Array];
    this.#check(root, call, { k: KIND.scatter, r: root });
    return decodePart(dtype, bytes);
  }

  *alltoall(parts: Part[]): Steps<unknown> {
    const tag = this.#next();
    const { me, size } = this.#t;
    for (let j = 0; j < size; j++) if (j !== me) this.#send(j, tag, [{ k: KIND.alltoall }, parts[j]!.dtype, parts[j]!.bytes]);
    const dtypes: number[] = [];
    const got: Uint8Array[] = [];
    for (let j = 0; j < size; j++) {
      if (j === me) {
        dtypes.push(parts[me]!.dtype);
        got.push(parts[me]!.bytes.slice());
        continue;
      }
      const [call, dtype, bytes] = (yield* this.#recv(j, tag)) as [Call, number, Uint8Array];
      this.#check(j, call, { k: KIND.alltoall });
      dtypes.push(dtype);
      got.push(bytes);
    }
    const d0 = dtypes[0]!;
    if (d0 !== DTYPE_MSGPACK && dtypes.every((d) => d === d0)) {
      const out = allocate(d0, got.reduce((a, b) => a + b.byteLength, 0));
      const o = bytesOf(out);
      let off = 0;
      for (const b of got) {
        o.set(b, off);
        off += b.byteLength;
      }
      return finish(d0, out);
    }
    return got.map((b, j) => decodePart(dtypes[j]!, b));
  }

  /** reduce (result at `root`), allreduce (everywhere), scan (inclusive prefix), folded in team-rank order. */
  *reduce<R>(buf: TypedArray, op: ReduceOp, kind: typeof KIND.reduce | typeof KIND.allreduce | typeof KIND.scan, root: number, result: R, scalar: ((a: TypedArray) => R) | null): Steps<R> {
    const tag = this.#next();
    const { me, size } = this.#t;
    const at = kind === KIND.reduce ? root : 0;
    const call: Call = { k: kind, d: dtypeOf(buf), o: opCode(op), n: buf.byteLength, ...(kind === KIND.reduce ? { r: root } : {}) };
    const all = yield* this.#gatherTo(tag, at, { c: call, v: buf });
    let mine: TypedArray | null = null;
    if (all !== null) {
      const k = kernel(buf.constructor, op);
      const acc = (all[0]!.v as TypedArray).slice() as TypedArray;
      if (kind === KIND.scan) {
        // Only team rank 0 gathers a scan: it sends each member its prefix.
        for (let j = 1; j < size; j++) {
          k(acc, 0, all[j]!.v as TypedArray, 0, acc.length);
          this.#send(j, tag + 1, acc);
        }
        mine = all[0]!.v as TypedArray;
      } else {
        for (let j = 1; j < size; j++) k(acc, 0, all[j]!.v as TypedArray, 0, acc.length);
        mine = acc;
      }
    }
    if (kind === KIND.allreduce) mine = (yield* this.#bcastFrom(tag + 1, 0, mine)) as TypedArray;
    else if (kind === KIND.scan && me !== 0) mine = (yield* this.#recv(0, tag + 1)) as TypedArray;
    if (mine !== null) (buf as Float64Array).set(mine as Float64Array);
    return result === null || scalar === null ? result : scalar(buf);
  }
}

/** Every member's value: concatenated when all are typed arrays of one type, else the values. */
function assemble(values: unknown[]): unknown {
  const d0 = dtypeOf(values[0]);
  if (d0 !== DTYPE_MSGPACK && values.every((v) => isTyped(v) && dtypeOf(v) === d0)) {
    const total = values.reduce<number>((a, v) => a + (v as TypedArray).byteLength, 0);
    const out = allocate(d0, total);
    const o = bytesOf(out);
    let off = 0;
    for (const v of values) {
      o.set(bytesOf(v as TypedArray), off);
      off += (v as TypedArray).byteLength;
    }
    return finish(d0, out);
  }
  return values;
}
