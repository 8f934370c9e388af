/**
 * A rank's endpoints to every peer, bound on first use (issue 12.4): node
 * peers at init from the cards exchanged within the node (shared memory needs
 * them: collectives map their scratch), every other peer when it is first
 * used or prepared, from its card fetched then (mprun's controller, or
 * PMIx_Get: direct modex) and the link to its node's agent opened then. A
 * rank that talks to k peers on other nodes fetches k cards and opens at most
 * k links, whatever the job's size; collectives prepare their schedule's
 * peers when a team is made (runtime/coll/peers.ts), at a point that can await.
 *
 * An endpoint not bound yet is a LazyEndpoint: it starts the binding at its
 * first operation and runs that operation and every later one, in order, on
 * the bound endpoint (puts and sends copied, so the caller may reuse its
 * data at once); once bound it only forwards.
 */
import { copyPayload } from '../core/codec.js';
import { MprunError } from '../core/errors.js';
import type { TypedArray } from '../core/types.js';
import type { AtomicOpCode, Endpoint, EndpointCaps, SendCompletion } from './endpoint.js';
import type { AgentLink } from './dsm/client.js';
import type { AgentLinks } from './dsm/links.js';
import type { PeerCard, RankTransports, RegisteredTransport } from './registry.js';

/** Wire-up counters of this process (globalThis[Symbol.for('mprun.wireup.stats')]), read by tests and bench/scale. */
export interface WireupStats {
  /** Cards of this node's ranks, exchanged at init. */
  localCards: number;
  /** Cards of other nodes' ranks fetched on demand, and the requests that fetched them. */
  cardsFetched: number;
  fetches: number;
  /** Connections opened to other nodes' agents. */
  linksOpened: number;
  /** Endpoints to other nodes' ranks bound, and of those bound blocking (a synchronous collective's first meeting). */
  remoteBound: number;
  syncBinds: number;
  /** Bytes the wire-up service (mprun's controller) sent this rank. */
  controlBytes: number;
}

export function wireupStats(): WireupStats {
  const key = Symbol.for('mprun.wireup.stats');
  const g = globalThis as unknown as Record<symbol, WireupStats | undefined>;
  return (g[key] ??= { localCards: 0, cardsFetched: 0, fetches: 0, linksOpened: 0, remoteBound: 0, syncBinds: 0, controlBytes: 0 });
}

export interface PeerTableOptions {
  mine: RankTransports;
  /** The node index of every rank. */
  nodeOf: Int32Array;
  /** Cards known at init (this node's ranks). */
  known: ReadonlyMap<number, PeerCard>;
  /** The transport a peer's endpoint will be, before its card is here (its name until bound), and with the card. */
  planned(rank: number): RegisteredTransport;
  plan(rank: number, card: PeerCard): RegisteredTransport;
  /** Fetches cards (one request per batch); and blocking, where the wire-up can (PMIx), else null. */
  fetch(ranks: readonly number[]): Promise<PeerCard[]>;
  fetchSync: ((ranks: readonly number[]) => PeerCard[]) | null;
  /** The rank's links to other nodes' agents (null: no agents, direct launch or one node). */
  links: AgentLinks | null;
  /** The first rank of each node (whose card tells its agent's address). */
  firstOf(node: number): number;
}

export class PeerTable implements Binder {
  /** One endpoint per world rank; entries for other nodes are LazyEndpoints until bound. */
  readonly endpoints: Endpoint[];
  readonly #o: PeerTableOptions;
  readonly #cards = new Map<number, PeerCard>();
  readonly #lazy: Array<LazyEndpoint | null>;
  /** Ranks being prepared, and the promise that settles when they are bound. */
  readonly #preparing = new Map<number, Promise<void>>();
  readonly #stats = wireupStats();

  constructor(o: PeerTableOptions) {
    this.#o = o;
    for (const [r, c] of o.known) this.#cards.set(r, c);
    const me = o.mine.rank;
    const size = o.nodeOf.length;
    this.#lazy = new Array<LazyEndpoint | null>(size).fill(null);
    this.endpoints = new Array<Endpoint>(size);
    for (let r = 0; r < size; r++) {
      const card = o.known.get(r);
      if (o.nodeOf[r] === o.nodeOf[me] || card !== undefined) {
        if (card === undefined) throw new MprunError('ERR_MPRUN_PROTOCOL', `rank ${r} of this node put no business card`, { rank: r });
        this.endpoints[r] = o.plan(r, card).bind(r, card, o.mine);
      } else {
        const lazy = new LazyEndpoint(r, o.planned(r), this);
        this.#lazy[r] = lazy;
        this.endpoints[r] = lazy;
      }
    }
  }

  /** Whether a card or a link is on its way (waits then let the event loop run). */
  busy(): boolean {
    return this.#preparing.size > 0;
  }

  /** Binds `ranks` (one card request for those not here); null when all are bound already. */
  prepare(ranks: readonly number[]): Promise<void> | null {
    const waits: Promise<void>[] = [];
    const missing: number[] = [];
    for (const r of new Set(ranks)) {
      const lazy = this.#lazy[r];
      if (lazy === null || lazy === undefined || lazy.bound) continue;
      const p = this.#preparing.get(r);
      if (p !== undefined) waits.push(p);
      else missing.push(r);
    }
    if (missing.length > 0) {
      const p = this.#prepareMissing(missing);
      for (const r of missing) this.#preparing.set(r, p);
      const clear = (): void => {
        for (const r of missing) this.#preparing.delete(r);
      };
      p.then(clear, clear);
      waits.push(p);
    }
    return waits.length === 0 ? null : Promise.all(waits).then(() => undefined);
  }

  async #prepareMissing(ranks: number[]): Promise<void> {
    const need = ranks.filter((r) => !this.#cards.has(r));
    if (need.length > 0) {
      let cards: PeerCard[];
      try {
        cards = await this.#o.fetch(need);
      } catch (e) {
        // Bound meanwhile by a synchronous call (prepareSync): a late failure of this request concerns nobody.
        if (ranks.every((r) => this.#lazy[r]!.bound)) return;
        throw e;
      }
      this.#remember(need, cards);
    }
    // A synchronous collective may have bound some meanwhile (prepareSync).
    await Promise.all(ranks.filter((r) => !this.#lazy[r]!.bound).map(async (r) => this.#lazy[r]!.bindTo(await this.#bind(r))));
  }

  #remember(ranks: readonly number[], cards: readonly PeerCard[]): void {
    this.#stats.fetches++;
    ranks.forEach((r, i) => {
      const c = cards[i];
      if (c === undefined || c === null) throw new MprunError('ERR_MPRUN_PROTOCOL', `rank ${r} put no business card`, { rank: r });
      if (this.#cards.has(r)) return;
      this.#cards.set(r, c);
      this.#stats.cardsFetched++;
    });
  }

  async #bind(r: number): Promise<Endpoint> {
    const card = this.#cards.get(r)!;
    const t = this.#o.plan(r, card);
    // Its node's agent link first: the dsm endpoint is bound over it.
    if (t.name === 'dsm') await this.#openLink(card);
    const lazy = this.#lazy[r]!;
    return lazy.bound ? lazy : this.#bindNow(r, card, t);
  }

  #bindNow(r: number, card: PeerCard, t: RegisteredTransport): Endpoint {
    this.#stats.remoteBound++;
    return t.bind(r, card, this.#o.mine);
  }

  async #openLink(card: PeerCard): Promise<AgentLink> {
    const links = this.#o.links;
    if (links === null || card.agent === null) throw new MprunError('ERR_MPRUN_UNREACHABLE', `node ${card.node} has no agent serving data`);
    return links.of(card.nodeIndex) ?? links.open(card.nodeIndex, card.node, card.agent);
  }

  /**
   * Binds `ranks` now, blocking: for a synchronous collective (alloc, split)
   * of a team whose partners were not bound yet. Cards come from the blocking
   * fetch (PMIx_Get; mprun's controller read from its socket's descriptor),
   * links are connected at once (AgentLinks.openNow); where neither can be
   * done without the event loop, the error says to await the team first.
   */
  prepareSync(ranks: readonly number[], what: () => string, advice = 'await any collective of the team first'): void {
    const missing = [...new Set(ranks)].filter((r) => this.#lazy[r]?.bound === false);
    if (missing.length === 0) return;
    const fetchSync = this.#o.fetchSync;
    const blocked = (why: string): MprunError =>
      new MprunError('ERR_MPRUN_UNSUPPORTED', `${what()} must reach rank(s) ${missing.join(',')} on other nodes for the first time, and ${why}: ${advice} (peers connect on first use)`);
    if (fetchSync === null) throw blocked('their cards cannot be fetched synchronously here');
    const need = missing.filter((r) => !this.#cards.has(r));
    if (need.length > 0) this.#remember(need, fetchSync(need));
    for (const r of missing) {
      const card = this.#cards.get(r)!;
      const t = this.#o.plan(r, card);
      if (t.name === 'dsm') {
        const links = this.#o.links;
        if (links === null || card.agent === null) throw new MprunError('ERR_MPRUN_UNREACHABLE', `node ${card.node} has no agent serving data`);
        if (links.of(card.nodeIndex) === null && links.openNow(card.nodeIndex, card.node, card.agent) === null) {
          throw blocked(`the connection to node ${card.node}'s agent cannot be made without the event loop here`);
        }
      }
      this.#lazy[r]!.bindTo(this.#bindNow(r, card, t));
      this.#stats.syncBinds++;
      // Bound: no longer busy (the asynchronous binding, when it resumes, finds it bound).
      this.#preparing.delete(r);
    }
  }

  /**
   * Binds now, blocking, the endpoints whose binding began on first use and
   * that have operations queued (a send not awaited): a synchronous wait runs
   * no event loop to finish their binding, so those would never start. Others
   * still binding (a team's partners, prepared ahead) are left to the loop.
   */
  bindPendingSync(what: () => string): void {
    if (this.#preparing.size === 0) return;
    const pending: number[] = [];
    for (const r of this.#preparing.keys()) if (this.#lazy[r]?.waiting === true) pending.push(r);
    if (pending.length > 0) this.prepareSync(pending, what, 'await the operations with them first');
  }

  /** Binds rank `r`'s endpoint now, blocking, if it is not bound yet (LazyEndpoint.connectSync: a synchronous send's destination). */
  bindSync(r: number, what: () => string): void {
    if (this.#lazy[r]?.bound === false) this.prepareSync([r], what, 'use send() for the first message to it');
  }

  /** Where node `node`'s agent listens: from the card of its first rank (fetched once). */
  async agentOf(node: number): Promise<{ name: string; address: string }> {
    const first = this.#o.firstOf(node);
    if (!this.#cards.has(first)) this.#remember([first], await this.#o.fetch([first]));
    const card = this.#cards.get(first)!;
    if (card.agent === null) throw new MprunError('ERR_MPRUN_UNREACHABLE', `node ${card.node} has no agent serving data`);
    return { name: card.node, address: card.agent };
  }

  /** @internal a LazyEndpoint's first operation. */
  bindOne(r: number): void {
    // Errors reach the operations queued on the endpoint (LazyEndpoint.fail).
    this.prepare([r])?.catch((e: unknown) => this.#lazy[r]!.fail(e instanceof Error ? e : new Error(String(e))));
  }
}

/** What an endpoint not bound yet promises: nothing mapped, puts complete at a flush. */
function unboundCaps(t: Pick<RegisteredTransport, 'attrs'>): EndpointCaps {
  return { canMap: false, atomics: true, putCompleteOnReturn: false, progressWithoutTarget: false, latency: t.attrs.latency, bandwidth: t.attrs.bandwidth };
}

/** A send queued until its endpoint is bound: done once the bound endpoint's send is. */
class QueuedSend implements SendCompletion {
  inner: SendCompletion | null = null;
  error: Error | null = null;
  get done(): boolean {
    if (this.error !== null) throw this.error;
    return this.inner?.done ?? false;
  }
}

/** Who binds a LazyEndpoint when its first operation comes (the PeerTable; bindTo or fail answer it). */
export interface Binder {
  bindOne(rank: number): void;
  bindSync(rank: number, what: () => string): void;
}

export class LazyEndpoint implements Endpoint {
  readonly #rank: number;
  readonly #planned: Pick<RegisteredTransport, 'name' | 'attrs'>;
  readonly #table: Binder;
  #ep: Endpoint | null = null;
  #queue: Array<(ep: Endpoint) => void> = [];
  #failures: Array<(e: Error) => void> = [];
  #started = false;
  #error: Error | null = null;
  /** What a fence queued before the binding failed with: the next flush reports it. */
  #fenceError: Error | null = null;
  readonly #caps: EndpointCaps;

  constructor(rank: number, planned: Pick<RegisteredTransport, 'name' | 'attrs'>, table: Binder) {
    this.#rank = rank;
    this.#planned = planned;
    this.#table = table;
    this.#caps = unboundCaps(planned);
  }

  get bound(): boolean {
    return this.#ep !== null;
  }

  connectSync(what: () => string): void {
    if (this.#ep === null) this.#table.bindSync(this.#rank, what);
  }

  /** Operations are queued until it is bound. */
  get waiting(): boolean {
    return this.#queue.length > 0;
  }

  get name(): string {
    return this.#ep?.name ?? this.#planned.name;
  }

  get caps(): EndpointCaps {
    return this.#ep?.caps ?? this.#caps;
  }

  /** @internal the endpoint is bound: run what was queued, in order. */
  bindTo(ep: Endpoint): void {
    if (this.#ep !== null) return;
    this.#ep = ep;
    const q = this.#queue;
    this.#queue = [];
    this.#failures = [];
    for (const op of q) op(ep);
  }

  /** @internal binding failed: every queued operation, and every later one, fails with `e`. */
  fail(e: Error): void {
    this.#error = e;
    const f = this.#failures;
    this.#queue = [];
    this.#failures = [];
    for (const reject of f) reject(e);
  }

  #later<T>(op: (ep: Endpoint) => T | Promise<T>): Promise<T> {
    if (this.#error !== null) return Promise.reject(this.#error);
    return new Promise<T>((resolve, reject) => {
      this.#queue.push((ep) => {
        try {
          const r = op(ep);
          if (r instanceof Promise) r.then(resolve, reject);
          else resolve(r);
        } catch (e) {
          reject(e);
        }
      });
      this.#failures.push(reject);
      this.#start();
    });
  }

  #start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#table.bindOne(this.#rank);
  }

  map(): ArrayBuffer | null {
    return this.#ep?.map() ?? null;
  }

  mapScratch(): ArrayBuffer | null {
    return this.#ep?.mapScratch() ?? null;
  }

  put(offset: number, src: TypedArray): void {
    if (this.#ep !== null) return this.#ep.put(offset, src);
    if (this.#error !== null) throw this.#error;
    const copy = src.slice();
    // The put's failure surfaces at the flush that completes it (quiet, barrier).
    void this.#later((ep) => ep.put(offset, copy)).catch(() => undefined);
  }

  putNbi(offset: number, src: TypedArray): void {
    const ep = this.#ep;
    if (ep?.putNbi !== undefined) ep.putNbi(offset, src);
    else this.put(offset, src);
  }

  get(offset: number, dst: TypedArray): Promise<void> | undefined {
    if (this.#ep !== null) return this.#ep.get(offset, dst);
    return this.#later((ep) => ep.get(offset, dst));
  }

  atomic(op: AtomicOpCode, dtype: number, offset: number, a: number | bigint, b: number | bigint): Promise<number | bigint> | number | bigint {
    if (this.#ep !== null) return this.#ep.atomic(op, dtype, offset, a, b);
    return this.#later((ep) => ep.atomic(op, dtype, offset, a, b));
  }

  fence(): void {
    if (this.#ep !== null) return this.#ep.fence?.();
    // Among the queued operations, which run in order once it is bound (World.fence() reaches
    // another node's endpoints only through this wrapper). What it fails with (a refused put it
    // completed) is the next flush's to report: nobody waits for a fence.
    if (this.#error === null && this.#started) {
      const fence = (ep: Endpoint): void => {
        try {
          ep.fence?.();
        } catch (e) {
          this.#fenceError ??= e instanceof Error ? e : new Error(String(e));
        }
      };
      void this.#later(fence).catch(() => undefined); // a failed binding: every queued operation's error
    }
  }

  flush(): Promise<void> | undefined {
    if (this.#ep !== null) return this.#flushBound(this.#ep);
    if (this.#error !== null) return Promise.reject(this.#error);
    if (!this.#started) return undefined;
    return this.#later((ep) => this.#flushBound(ep));
  }

  /** The bound endpoint's flush; rejected, once it is done, with what a queued fence failed with first. */
  #flushBound(ep: Endpoint): Promise<void> | undefined {
    const e = this.#fenceError;
    if (e === null) return ep.flush();
    this.#fenceError = null;
    // The puts after the fence are flushed all the same: the caller's quiet counts them done.
    const fail = (): never => {
      throw e;
    };
    return Promise.resolve(ep.flush()).then(fail, fail);
  }

  send(tag: number, dtype: number, payload: TypedArray, stable: boolean): SendCompletion {
    if (this.#ep !== null) return this.#ep.send(tag, dtype, payload, stable);
    if (this.#error !== null) throw this.#error;
    const s = new QueuedSend();
    const copy = copyPayload(dtype, payload);
    this.#later((ep) => {
      s.inner = ep.send(tag, dtype, copy, false);
    }).catch((e: unknown) => (s.error = e instanceof Error ? e : new Error(String(e))));
    return s;
  }

  close(): void {
    this.#ep?.close();
    this.fail(new MprunError('ERR_MPRUN_FINALIZED', 'the world is finalized'));
  }
}
