/**
 * Collectives of teams that span nodes, over the runtime's own point-to-point
 * messages (tags from INTERNAL_TAG up, never matched by user receives), in two
 * levels: within a node, members send to and receive from their node's leader
 * through the shared-memory rings; across nodes, the leaders run O(log P)
 * algorithms over the network (P nodes; schedules.ts, msg-reduce.ts):
 *
 *   barrier      dissemination among leaders (ceil(lg P) rounds)
 *   bcast        binomial tree of leaders rooted at the root (the root leads its node)
 *   gather       binomial tree of leaders, each forwarding its subtree's contributions
 *   scatter      binomial tree of leaders, each receiving its subtree's parts
 *   allgather    Bruck's among leaders (ceil(lg P) rounds, any P)
 *   reduce       each leader folds its node, then a binomial reduce tree
 *   allreduce    each leader folds its node, then recursive doubling (small),
 *                or reduce-scatter by halving + allgather by doubling (from
 *                LARGE_ALLREDUCE_BYTES); non-powers of two fold the extra
 *                leaders in first and hand them the result last
 *   scan         recursive doubling among all members
 *   alltoall     pairwise, every member to every member
 *
 * MPRUN_COLL_REPRODUCIBLE=1 (layout.reproducible) keeps the earlier fold:
 * reduce, allreduce and scan gather every contribution at one rank (through
 * the tree above) and fold them there in team-rank order, so every member
 * gets bitwise the one-node result whatever the node count; then a broadcast
 * (allreduce) or a scatter of the prefixes (scan), both through the tree.
 *
 * Every message carries what its sender called (kind, type, operator, root,
 * length), and every receiver checks it against its own call: a member that
 * called something else, or another length, fails the job with "collective
 * mismatch" instead of a hang. Members whose collective only receives
 * (bcast, scatter) still send their call to their leader, so that one is
 * checked too.
 *
 * Same generator protocol as ShmCollectives: the Team drives these
 * asynchronously, or synchronously for split() (messages always arrive through
 * rings, so a synchronous wait sees them). Counters: stats.ts.
 */
import { allocate, DTYPE_MSGPACK, dtypeOf, finish, forMsgpack } from '../../core/codec.js';
import { MprunError } from '../../core/errors.js';
import { INTERNAL_TAG, type Messenger } from '../p2p.js';
import { baseTypedArrayCtor, type TypedArray } from '../../core/types.js';
import { WAKE_MESSAGE } from '../../transports/shm/control.js';
import { bytesOf, decodePart, isTyped, joins, KIND, KIND_NAME, typeName, type CollectiveEngine, type Part, type Ready, type Steps } from './engine.js';
import { kernel, opCode, type Kernel, type ReduceOp } from './ops.js';
import { collReproducible } from '../config.js';
import { allreduceAmong, reduceAmong, scanAmong, type Peers } from './msg-reduce.js';
import { binomial, bruck, dissemination, fromVirtual, toVirtual, type BinomialNode } from './schedules.js';
import { collStats, payloadBytes, type CollStats } from './stats.js';
import { assemble, splitList } from './msg-lists.js';

export interface MsgTeamLayout {
  me: number;
  size: number;
  worldRanks: readonly number[];
  /** The node index of each member. */
  nodes: readonly number[];
  slot: number;
  messenger(): Pick<Messenger, 'sendInternal' | 'takeInternal'>;
  /** Reductions fold in team-rank order at one rank; default: MPRUN_COLL_REPRODUCIBLE. */
  reproducible?: boolean;
}

/** What a member says it called, checked by whoever receives its messages. */
interface Call {
  k: number;
  d?: number;
  o?: number;
  r?: number;
  n?: number;
  /** 1: the reduction folds in team-rank order (MPRUN_COLL_REPRODUCIBLE=1). */
  m?: number;
}

type Msg = [Call, unknown];

/** Tags per collective: two phases of three (members to leader, among leaders, leader to members). */
const PHASES = 8;
const UP = 0;
const ACROSS = 1;
const DOWN = 2;
const SECOND = 3;
/** Lists between leaders travel in messages of about this many bytes at most. */
const LIST_BYTES = 4 * 1024 * 1024;

interface LeaderPeers extends Peers {
  sendList(to: number, items: unknown[], unit: number): void;
  takeList(from: number): Steps<unknown[]>;
}

/** A leader's place in the binomial tree of the P node groups' leaders, rooted at rootGroup's. */
interface TreePlace {
  node: BinomialNode;
  rootGroup: number;
  P: number;
  leaders: LeaderPeers;
}

export class MsgCollectives implements CollectiveEngine {
  readonly #t: MsgTeamLayout;
  /** Members of each node, in team-rank order; nodes indexed in the order of their first member. */
  readonly #groups: number[][] = [];
  /** Node index (into #groups) of each member. */
  readonly #g: number[];
  readonly #reproducible: boolean;
  readonly #stats: CollStats = collStats();
  #count = 0;

  constructor(t: MsgTeamLayout) {
    this.#t = t;
    this.#reproducible = t.reproducible ?? collReproducible();
    const index = new Map<number, number>();
    this.#g = t.nodes.map((n, r) => {
      let g = index.get(n);
      if (g === undefined) {
        index.set(n, (g = this.#groups.length));
        this.#groups.push([]);
      }
      this.#groups[g]!.push(r);
      return g;
    });
  }

  /** Tags of the next collective's phases. */
  #next(): number {
    this.#stats.collectives++;
    const c = this.#count++;
    return INTERNAL_TAG + this.#t.slot * 0x100000 + ((c * PHASES) & 0xfffff);
  }

  /** The leader of node `g` for a collective rooted at `root` (-1: none): the root on its node, else the first member. */
  #leader(g: number, root: number): number {
    return root >= 0 && this.#g[root] === g ? root : this.#groups[g]![0]!;
  }

  #send(to: number, tag: number, call: Call, value: unknown): void {
    const t = this.#t;
    // The value goes inside a msgpack array (codec.ts forMsgpack), packed by sendInternal at once.
    const msg: Msg = [call, forMsgpack(value)];
    t.messenger().sendInternal(t.worldRanks[to]!, msg, tag);
    const s = this.#stats;
    const bytes = payloadBytes(msg);
    s.messages++;
    s.bytes += bytes;
    if (t.nodes[to] !== t.nodes[t.me]) {
      s.remoteMessages++;
      s.remoteBytes += bytes;
    }
  }

  /** The next message of this collective from `from`, checked against this rank's call; its value. */
  *#take(from: number, tag: number, want: Call): Steps<unknown> {
    const ms = this.#t.messenger();
    const src = this.#t.worldRanks[from]!;
    let m = ms.takeInternal(src, tag);
    if (m === null) {
      // Idempotent (Ready): once taken, the message stays this step's, whoever polls again.
      const ready: Ready = () => m !== null || (m = ms.takeInternal(src, tag)) !== null;
      ready.wake = WAKE_MESSAGE;
      while (m === null) yield ready;
    }
    const [call, value] = m!.data as Msg;
    this.#check(from, call, want);
    return value;
  }

  /** Node leaders as participants 0..P-1 of an algorithm, on tag `tag`. */
  #leaders(tag: number, call: Call, root: number): LeaderPeers {
    return {
      send: (g, value) => this.#send(this.#leader(g, root), tag, call, value),
      take: (g) => this.#take(this.#leader(g, root), tag, call),
      sendList: (g, items, unit) => this.#sendList(this.#leader(g, root), tag, call, items, unit),
      takeList: (g) => this.#takeList(this.#leader(g, root), tag, call),
    };
  }

  /**
   * Sends a list (records of `unit` items each) as messages of about LIST_BYTES
   * at most (a larger record goes alone): a subtree's contributions grow with
   * the subtree, and messages of a few MiB keep the receiver folding while
   * the next one is on the wire (and each one a single frame between nodes).
   */
  #sendList(to: number, tag: number, call: Call, items: unknown[], unit: number): void {
    const chunks = splitList(items, unit, LIST_BYTES);
    chunks.forEach((c, i) => this.#send(to, tag, call, [i === 0 ? chunks.length : 0, c]));
  }

  *#takeList(from: number, tag: number, call: Call): Steps<unknown[]> {
    const [count, first] = (yield* this.#take(from, tag, call)) as [number, unknown[]];
    for (let i = 1; i < count; i++) for (const x of ((yield* this.#take(from, tag, call)) as [number, unknown[]])[1]) first.push(x);
    return first;
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
    if (got.m !== want.m) throw this.#mismatch(j, `runs with MPRUN_COLL_REPRODUCIBLE=${got.m ?? 0}, this rank with ${want.m ?? 0} (set it for the whole job: mprun -x MPRUN_COLL_REPRODUCIBLE=1)`);
  }

  /** The other members of this rank's node. */
  #mates(): number[] {
    const me = this.#t.me;
    return this.#groups[this.#g[me]!]!.filter((j) => j !== me);
  }

  /** Every member's value at `root`, in team-rank order (null elsewhere): members to their leader, leaders up a binomial tree. */
  *#gatherAt(tag: number, call: Call, root: number, value: unknown): Steps<unknown[] | null> {
    const { me, size } = this.#t;
    const g = this.#g[me]!;
    const leader = this.#leader(g, root);
    if (me !== leader) {
      this.#send(leader, tag + UP, call, value);
      return null;
    }
    // Flat pairs: team rank, value.
    const bundle: unknown[] = [me, value];
    for (const j of this.#mates()) bundle.push(j, yield* this.#take(j, tag + UP, call));
    const P = this.#groups.length;
    const gr = this.#g[root]!;
    const node = binomial(P, toVirtual(g, gr, P));
    const leaders = this.#leaders(tag + ACROSS, call, root);
    for (let i = node.children.length - 1; i >= 0; i--) {
      for (const x of yield* leaders.takeList(fromVirtual(node.children[i]!.child, gr, P))) bundle.push(x);
    }
    if (node.parent >= 0) {
      leaders.sendList(fromVirtual(node.parent, gr, P), bundle, 2);
      return null;
    }
    const all: unknown[] = new Array(size);
    for (let i = 0; i < bundle.length; i += 2) all[bundle[i] as number] = bundle[i + 1];
    return all;
  }

  /**
   * A one-to-all from `root`: a member sends its call up (with `ack`) and
   * takes its value from its leader; a leader runs `lead` at its place in the
   * binomial tree of leaders rooted at root's (which hands the leader's members
   * their values and returns its own), then takes its members' acks.
   */
  *#fromRoot(tag: number, call: Call, root: number, ack: boolean, lead: (at: TreePlace) => Steps<unknown>): Steps<unknown> {
    const me = this.#t.me;
    const g = this.#g[me]!;
    const leader = this.#leader(g, root);
    if (me !== leader) {
      if (ack) this.#send(leader, tag + UP, call, null);
      return yield* this.#take(leader, tag + DOWN, call);
    }
    const P = this.#groups.length;
    const gr = this.#g[root]!;
    const own = yield* lead({ node: binomial(P, toVirtual(g, gr, P)), rootGroup: gr, P, leaders: this.#leaders(tag + ACROSS, call, root) });
    if (ack) for (const j of this.#mates()) yield* this.#take(j, tag + UP, call);
    return own;
  }

  /** `value` from `root` to every member: down the tree of leaders, then each leader to its members. */
  #bcastFrom(tag: number, call: Call, root: number, value: unknown, ack: boolean): Steps<unknown> {
    return this.#fromRoot(tag, call, root, ack, (at) => this.#bcastLead(tag, call, value, at));
  }

  *#bcastLead(tag: number, call: Call, value: unknown, { node, rootGroup, P, leaders }: TreePlace): Steps<unknown> {
    let v = value;
    if (node.parent >= 0) v = yield* leaders.take(fromVirtual(node.parent, rootGroup, P));
    for (const c of node.children) leaders.send(fromVirtual(c.child, rootGroup, P), v);
    for (const j of this.#mates()) this.#send(j, tag + DOWN, call, v);
    return v;
  }

  /**
   * parts[j] (given at `root`) to member j: down the tree of leaders, each
   * receiving its subtree's parts in one message, then to the members.
   */
  #scatterFrom(tag: number, call: Call, root: number, parts: unknown[] | null, ack: boolean): Steps<unknown> {
    return this.#fromRoot(tag, call, root, ack, (at) => this.#scatterLead(tag, call, parts, at));
  }

  *#scatterLead(tag: number, call: Call, parts: unknown[] | null, { node, rootGroup, P, leaders }: TreePlace): Steps<unknown> {
    const me = this.#t.me;
    // Flat pairs: team rank, part.
    let mine: unknown[];
    if (node.parent >= 0) mine = yield* leaders.takeList(fromVirtual(node.parent, rootGroup, P));
    else mine = parts!.flatMap((x, j) => [j, x]);
    for (const c of node.children) {
      const sub: unknown[] = [];
      for (let i = 0; i < mine.length; i += 2) {
        const v = toVirtual(this.#g[mine[i] as number]!, rootGroup, P);
        if (v >= c.child && v < c.child + c.size) sub.push(mine[i], mine[i + 1]);
      }
      leaders.sendList(fromVirtual(c.child, rootGroup, P), sub, 2);
    }
    let own: unknown = null;
    const mates = new Set(this.#mates());
    for (let i = 0; i < mine.length; i += 2) {
      const j = mine[i] as number;
      if (j === me) own = mine[i + 1];
      else if (mates.has(j)) this.#send(j, tag + DOWN, call, mine[i + 1]);
    }
    return own;
  }

  *barrier(): Steps<void> {
    const tag = this.#next();
    const call: Call = { k: KIND.barrier };
    const me = this.#t.me;
    const g = this.#g[me]!;
    const leader = this.#leader(g, -1);
    if (me !== leader) {
      this.#send(leader, tag + UP, call, null);
      yield* this.#take(leader, tag + DOWN, call);
      return;
    }
    const mates = this.#mates();
    for (const j of mates) yield* this.#take(j, tag + UP, call);
    const leaders = this.#leaders(tag + ACROSS, call, -1);
    for (const { to, from } of dissemination(this.#groups.length, g)) {
      leaders.send(to, null);
      yield* leaders.take(from);
    }
    for (const j of mates) this.#send(j, tag + DOWN, call, null);
  }

  *bcast(data: unknown, root: number): Steps<unknown> {
    const tag = this.#next();
    const call: Call = { k: KIND.bcast, r: root };
    const me = this.#t.me;
    const value = yield* this.#bcastFrom(tag, call, root, me === root ? data : null, true);
    if (me === root) return data;
    if (isTyped(data)) {
      if (!isTyped(value) || dtypeOf(value) !== dtypeOf(data) || value.byteLength !== data.byteLength) {
        throw this.#mismatch(root, `broadcasts ${isTyped(value) ? `${value.byteLength} bytes of ${value.constructor.name}` : 'a msgpack value'} into this rank's ${data.constructor.name} of ${data.byteLength} bytes`);
      }
      (data as Float64Array).set(value as Float64Array);
      return data;
    }
    return value;
  }

  *gather(value: unknown, root: number | null): Steps<unknown> {
    const tag = this.#next();
    if (root !== null) {
      const all = yield* this.#gatherAt(tag, { k: KIND.gather, r: root }, root, value);
      return all === null ? null : assemble(all);
    }
    // allgather: Bruck's among the leaders, then each leader to its members.
    const call: Call = { k: KIND.allgather };
    const me = this.#t.me;
    const g = this.#g[me]!;
    const leader = this.#leader(g, -1);
    if (me !== leader) {
      this.#send(leader, tag + UP, call, value);
      return yield* this.#take(leader, tag + DOWN, call);
    }
    const mates = this.#mates();
    const block: unknown[] = [me, value];
    for (const j of mates) block.push(j, yield* this.#take(j, tag + UP, call));
    const blocks: unknown[][] = [block];
    const leaders = this.#leaders(tag + ACROSS, call, -1);
    for (const { to, from, count } of bruck(this.#groups.length, g)) {
      // Records: block index (among the ones sent), team rank, value.
      const items: unknown[] = [];
      for (let b = 0; b < count; b++) for (let i = 0; i < blocks[b]!.length; i += 2) items.push(b, blocks[b]![i], blocks[b]![i + 1]);
      leaders.sendList(to, items, 3);
      const got = yield* leaders.takeList(from);
      const base = blocks.length;
      for (let b = 0; b < count; b++) blocks.push([]);
      for (let i = 0; i < got.length; i += 3) blocks[base + (got[i] as number)]!.push(got[i + 1], got[i + 2]);
    }
    const all: unknown[] = new Array(this.#t.size);
    for (const b of blocks) for (let i = 0; i < b.length; i += 2) all[b[i] as number] = b[i + 1];
    const result = assemble(all);
    for (const j of mates) this.#send(j, tag + DOWN, call, result);
    return result;
  }

  *scatter(parts: Part[] | null, root: number): Steps<unknown> {
    const tag = this.#next();
    const [dtype, bytes] = (yield* this.#scatterFrom(tag, { k: KIND.scatter, r: root }, root, parts === null ? null : parts.map((p) => [p.dtype, p.bytes]), true)) as [number, Uint8Array];
    return decodePart(dtype, bytes);
  }

  *alltoall(parts: Part[]): Steps<unknown> {
    const tag = this.#next();
    const call: Call = { k: KIND.alltoall };
    const { me, size } = this.#t;
    for (let j = 0; j < size; j++) if (j !== me) this.#send(j, tag, call, [parts[j]!.dtype, parts[j]!.bytes]);
    const dtypes: number[] = [];
    const got: Uint8Array[] = [];
    for (let j = 0; j < size; j++) {
      if (j === me) {
        dtypes.push(parts[me]!.dtype);
        got.push(parts[me]!.bytes.slice());
        continue;
      }
      const [dtype, bytes] = (yield* this.#take(j, tag, call)) as [number, Uint8Array];
      dtypes.push(dtype);
      got.push(bytes);
    }
    const d0 = dtypes[0]!;
    if (joins(d0) && dtypes.every((d) => d === d0)) {
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

  /** reduce (result at `root`), allreduce (everywhere), scan (inclusive prefix). */
  *reduce<R>(buf: TypedArray, op: ReduceOp, kind: typeof KIND.reduce | typeof KIND.allreduce | typeof KIND.scan, root: number, result: R, scalar: ((a: TypedArray) => R) | null): Steps<R> {
    const tag = this.#next();
    const call: Call = { k: kind, d: dtypeOf(buf), o: opCode(op), n: buf.byteLength, ...(kind === KIND.reduce ? { r: root } : {}), ...(this.#reproducible ? { m: 1 } : {}) };
    const k = kernel(baseTypedArrayCtor(buf.constructor), op); // a subclass's elements as its base type's (NaN, imul)
    const mine = this.#reproducible ? yield* this.#foldInOrder(tag, call, buf, k, kind, root) : yield* this.#fast(tag, call, buf, k, kind, root);
    if (mine !== null && mine !== buf) (buf as Float64Array).set(mine as Float64Array);
    return result === null || scalar === null ? result : scalar(buf);
  }

  /** MPRUN_COLL_REPRODUCIBLE: every contribution at one rank, folded in team-rank order. */
  *#foldInOrder(tag: number, call: Call, buf: TypedArray, k: Kernel, kind: number, root: number): Steps<TypedArray | null> {
    const at = kind === KIND.reduce ? root : 0;
    const all = (yield* this.#gatherAt(tag, call, at, buf)) as TypedArray[] | null;
    if (kind === KIND.scan) {
      let prefixes: TypedArray[] | null = null;
      if (all !== null) {
        const acc = all[0]!.slice() as TypedArray;
        prefixes = [all[0]!];
        for (let j = 1; j < all.length; j++) {
          k(acc, 0, all[j]!, 0, acc.length);
          prefixes.push(acc.slice() as TypedArray);
        }
      }
      return (yield* this.#scatterFrom(tag + SECOND, call, 0, prefixes, false)) as TypedArray;
    }
    let acc: TypedArray | null = null;
    if (all !== null) {
      acc = all[0]!.slice() as TypedArray;
      for (let j = 1; j < all.length; j++) k(acc, 0, all[j]!, 0, acc.length);
    }
    if (kind === KIND.allreduce) acc = (yield* this.#bcastFrom(tag + SECOND, call, 0, acc, false)) as TypedArray;
    return acc;
  }

  /** The O(log p) reductions: each leader folds its node's contributions, the leaders reduce among themselves. */
  *#fast(tag: number, call: Call, buf: TypedArray, k: Kernel, kind: number, root: number): Steps<TypedArray | null> {
    const { me, size } = this.#t;
    if (kind === KIND.scan) {
      const peers: Peers = { send: (j, v) => this.#send(j, tag, call, v), take: (j) => this.#take(j, tag, call) };
      return yield* scanAmong(peers, size, me, buf, k);
    }
    const at = kind === KIND.reduce ? root : -1;
    const g = this.#g[me]!;
    const leader = this.#leader(g, at);
    if (me !== leader) {
      this.#send(leader, tag + UP, call, buf);
      return kind === KIND.reduce ? null : ((yield* this.#take(leader, tag + DOWN, call)) as TypedArray);
    }
    // This node's contributions, folded in team-rank order.
    let acc: TypedArray | null = null;
    for (const j of this.#groups[g]!) {
      const x = j === me ? buf : ((yield* this.#take(j, tag + UP, call)) as TypedArray);
      if (acc === null) acc = x === buf ? (buf.slice() as TypedArray) : x;
      else k(acc, 0, x, 0, acc.length);
    }
    const P = this.#groups.length;
    const leaders = this.#leaders(tag + ACROSS, call, at);
    if (kind === KIND.reduce) return yield* reduceAmong(leaders, P, g, this.#g[root]!, acc!, k);
    const out = yield* allreduceAmong(leaders, P, g, acc!, k);
    for (const j of this.#mates()) this.#send(j, tag + DOWN, call, out);
    return out;
  }
}
