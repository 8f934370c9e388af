/**
 * Where a rank learns its place in the job and its peers' business cards:
 * mprun's job controller (a PMI-like key-value store), or any PMIx server
 * (`srun --mpi=pmix`, Open MPI's `mpirun`: direct launch). Launch
 * environments decide which: mprun's own variables first (a job mprun
 * started inside an srun step still bootstraps from mprun), then PMIx, else
 * a world of one.
 *
 * What is exchanged when (issue 12.4): the layout (which node each rank is
 * on) comes with the launch (MPRUN_LAYOUT; PMIx's host names), so no card is
 * needed to know who is local. At init a rank puts its card and receives its
 * node's ranks' cards only (shared memory needs them); another node's rank's
 * card is fetched when that peer is first used (transports/peers.ts): from
 * the controller, which holds each card once, or by PMIx_Get after a fence
 * that collects nothing (direct modex). A rank receives O(local + used)
 * cards; no process handles O(p^2) bytes.
 */
import { hostname } from 'node:os';
import { decodeLayout, layoutOf, type JobLayout } from '../core/layout.js';
import { MprunError } from '../core/errors.js';
import { wireupStats, type PeerCard } from '../transports/registry.js';
import { ControlClient } from './control.js';
import { PmixClient } from './pmix.js';
import type { WaitReport } from './wait.js';

/** The job as this rank sees it before wire-up. */
export interface JobPlace {
  rank: number;
  size: number;
  localRank: number;
  localSize: number;
  jobId: string;
  /** This node's name, as peers group ranks by node. */
  node: string;
  /** mprun's per-job secret (empty under PMIx: no agents to prove it to). */
  secret: string;
  /** The node control segment inherited from mprun's agent (null: this rank's own, or local rank 0's under PMIx). */
  controlFd: number | null;
  nodeIndex: number;
  nnodes: number;
  /** This node's agent's data address, for other nodes' ranks and shared variables (null: no agent). */
  agent: string | null;
}

export interface Wireup {
  readonly place: JobPlace;
  /** What bootstrapped this rank: 'mprun', 'pmix' or 'singleton'. */
  readonly kind: 'mprun' | 'pmix' | 'singleton';
  /** Which node each rank is on; known from the launch (or, where it cannot be, once exchange() has collected every card). */
  readonly layout: JobLayout;
  /** Publishes this rank's card; resolves with the cards of this node's ranks (of every rank where they had to be collected). */
  exchange(mine: PeerCard): Promise<Map<number, PeerCard>>;
  /** Other ranks' cards, in the order asked: one request to mprun, or PMIx_Get (direct modex). */
  fetchCards(ranks: readonly number[]): Promise<PeerCard[]>;
  /** The same, blocking (PMIx_Get; mprun's controller read from its connection's descriptor); null where there are no other cards. */
  readonly fetchCardsSync: ((ranks: readonly number[]) => PeerCard[]) | null;
  /** Stops the whole job (MPI_Abort). */
  abort(code: number, message: string): void;
  /** Where a long wait is reported (mprun's hang reports), if anywhere. */
  reportWaits: ((waits: WaitReport[]) => void) | null;
  finalize(): Promise<void>;
}

/** The job as mprun describes it to a rank (MPRUN_*), or null outside mprun. */
export function mprunPlace(): (JobPlace & { controller: string | null }) | null {
  const e = process.env;
  if (e.MPRUN_RANK === undefined) return null;
  const num = (name: string): number => {
    const v = Number(e[name]);
    if (!Number.isInteger(v) || v < 0) throw new MprunError('ERR_MPRUN_ARG', `${name}=${String(e[name])} is not a valid value; was this process started by mprun?`);
    return v;
  };
  return {
    rank: num('MPRUN_RANK'),
    size: num('MPRUN_SIZE'),
    localRank: num('MPRUN_LOCAL_RANK'),
    localSize: num('MPRUN_LOCAL_SIZE'),
    controller: e.MPRUN_CONTROLLER ?? null,
    secret: e.MPRUN_SECRET ?? '',
    controlFd: e.MPRUN_CTRL_FD === undefined ? null : num('MPRUN_CTRL_FD'),
    jobId: e.MPRUN_JOBID ?? 'singleton',
    node: e.MPRUN_NODE_NAME ?? hostname(),
    nodeIndex: e.MPRUN_NODE_INDEX === undefined ? 0 : num('MPRUN_NODE_INDEX'),
    nnodes: e.MPRUN_NNODES === undefined ? 1 : num('MPRUN_NNODES'),
    agent: e.MPRUN_AGENT_ADDR ?? null,
  };
}

/** MPRUN_LAYOUT, checked against this rank's place (a job of one node needs none). */
function mprunLayout(place: JobPlace): JobLayout {
  const text = process.env.MPRUN_LAYOUT;
  if (text === undefined || text === '') {
    if (place.nnodes === 1) return { nodeOf: new Int32Array(place.size), ranksOf: [Array.from({ length: place.size }, (_, r) => r)] };
    throw new MprunError('ERR_MPRUN_ARG', 'MPRUN_LAYOUT is not set for a job across nodes; was this process started by this version of mprun?');
  }
  const l = decodeLayout(text, place.size);
  if (l instanceof Error) throw new MprunError('ERR_MPRUN_ARG', `MPRUN_LAYOUT: ${l.message}`);
  const mine = l.ranksOf[place.nodeIndex];
  if (l.ranksOf.length !== place.nnodes || mine?.[place.localRank] !== place.rank || mine.length !== place.localSize) {
    throw new MprunError('ERR_MPRUN_ARG', `MPRUN_LAYOUT does not place rank ${place.rank} as local rank ${place.localRank} of ${place.localSize} on node ${place.nodeIndex} of ${place.nnodes}`);
  }
  return l;
}

/** mprun's controller: this rank's card put, its node's cards fetched at init, others' on first use. */
class MprunWireup implements Wireup {
  readonly kind = 'mprun';
  readonly place: JobPlace;
  readonly layout: JobLayout;
  readonly #controller: string | null;
  #client: ControlClient | null = null;
  reportWaits: ((waits: WaitReport[]) => void) | null = null;

  constructor(place: JobPlace & { controller: string | null }) {
    this.place = place;
    this.#controller = place.controller;
    this.layout = mprunLayout(place);
  }

  async exchange(mine: PeerCard): Promise<Map<number, PeerCard>> {
    const { rank, size, secret, nodeIndex } = this.place;
    if (this.#controller === null && size === 1) return new Map([[rank, mine]]);
    if (this.#controller === null) throw new MprunError('ERR_MPRUN_ARG', 'MPRUN_CONTROLLER is not set; start the job with mprun');
    const client = await ControlClient.connect(this.#controller, secret, rank);
    this.#client = client;
    this.reportWaits = (waits) => client.waits(waits);
    client.put(`card:${rank}`, mine);
    // Only this node's cards: answered once each of them is put (no job-wide fence).
    const local = this.layout.ranksOf[nodeIndex]!;
    const cards = await this.#cards(local);
    wireupStats().localCards += cards.length;
    client.unref();
    return new Map(local.map((r, i) => [r, cards[i]!]));
  }

  async fetchCards(ranks: readonly number[]): Promise<PeerCard[]> {
    if (this.#client === null) throw new MprunError('ERR_MPRUN_ARG', 'no connection to mprun to fetch business cards from');
    return this.#cards(ranks);
  }

  /** Blocking: read from the controller's connection while the event loop is held (a synchronous collective). */
  readonly fetchCardsSync = (ranks: readonly number[]): PeerCard[] => {
    if (this.#client === null) throw new MprunError('ERR_MPRUN_ARG', 'no connection to mprun to fetch business cards from');
    return this.#checked(ranks, this.#client.cardsSync(ranks) as Array<PeerCard | null>);
  };

  async #cards(ranks: readonly number[]): Promise<PeerCard[]> {
    return this.#checked(ranks, (await this.#client!.cards(ranks)) as Array<PeerCard | null>);
  }

  #checked(ranks: readonly number[], cards: Array<PeerCard | null>): PeerCard[] {
    wireupStats().controlBytes = this.#client!.received;
    return cards.map((c, i) => {
      if (c === null || c === undefined) throw new MprunError('ERR_MPRUN_PROTOCOL', `rank ${ranks[i]} put no business card`, { rank: ranks[i] });
      return c;
    });
  }

  abort(code: number, message: string): void {
    this.#client?.abort(code, message);
  }

  async finalize(): Promise<void> {
    if (this.#client === null) return;
    await this.#client.finalize();
    this.#client.close();
  }
}

/**
 * A PMIx server's job (direct launch): rank, size and this node's ranks from
 * the server; cards through put, commit and a collecting fence. Nodes are
 * told apart by host name (Slurm 22.05 reports every rank's node id as the
 * local one). No mprun agents run here: peers on other nodes need a network
 * transport of their own (UCX).
 */
class PmixWireup implements Wireup {
  readonly kind = 'pmix';
  readonly place: JobPlace;
  readonly #pmix: PmixClient;
  readonly reportWaits = null;
  /** From every rank's PMIX_HOSTNAME; null when the server does not hold them all (then from the collected cards). */
  #layout: JobLayout | null;

  constructor(pmix: PmixClient) {
    this.#pmix = pmix;
    const hosts: string[] = [];
    for (let r = 0; r < pmix.size; r++) {
      const h = pmix.peerHostname(r);
      if (h === null) break;
      hosts.push(h);
    }
    const known = hosts.length === pmix.size ? layoutOf(hosts) : null;
    this.#layout = known;
    const nodeIndex = known === null ? 0 : known.nodeOf[pmix.rank]!;
    this.place = {
      rank: pmix.rank,
      size: pmix.size,
      localRank: pmix.localRank,
      localSize: pmix.localSize,
      jobId: pmix.nspace,
      node: pmix.nodeName,
      secret: '',
      controlFd: null,
      // Without every host name: known once the cards are in (exchange()).
      nodeIndex,
      nnodes: known === null ? 1 : known.ranksOf.length,
      agent: null,
    };
    if (known !== null && known.ranksOf[nodeIndex]!.length !== pmix.localSize) {
      throw new MprunError('ERR_MPRUN_PROTOCOL', `PMIx reports ${pmix.localSize} ranks on node ${pmix.nodeName}, but its host names put ${known.ranksOf[nodeIndex]!.length} there`);
    }
  }

  get layout(): JobLayout {
    if (this.#layout === null) throw new MprunError('ERR_MPRUN_PROTOCOL', 'the layout is not known before the cards are in');
    return this.#layout;
  }

  readonly fetchCardsSync = (ranks: readonly number[]): PeerCard[] => ranks.map((r) => this.#pmix.getCardSync(r) as PeerCard);

  async fetchCards(ranks: readonly number[]): Promise<PeerCard[]> {
    return Promise.all(ranks.map(async (r) => (await this.#pmix.getCard(r)) as PeerCard));
  }

  async exchange(mine: PeerCard): Promise<Map<number, PeerCard>> {
    const p = this.#pmix;
    p.putCard(mine);
    p.commit();
    if (this.#layout !== null) {
      // A fence that collects nothing: every card is committed, and each is fetched by whoever needs it (direct modex).
      await p.fence({ collect: false });
      const local = this.#layout.ranksOf[this.place.nodeIndex]!;
      const cards = await Promise.all(local.map(async (r) => (r === p.rank ? mine : ((await p.getCard(r)) as PeerCard))));
      wireupStats().localCards += cards.length;
      return new Map(local.map((r, i) => [r, cards[i]!]));
    }
    // The server does not know every rank's host: collect every card (O(p) per rank, as before issue 12.4).
    await p.fence({ collect: true });
    const cards: PeerCard[] = [];
    for (let r = 0; r < p.size; r++) {
      const c = (r === p.rank ? mine : p.cardIfPresent(r) ?? (await p.getCard(r))) as PeerCard | null;
      if (c === null) throw new MprunError('ERR_MPRUN_PROTOCOL', `rank ${r} put no business card`);
      cards.push(c);
    }
    // Node indices in order of each node's first rank, the same on every rank.
    const l = layoutOf(cards.map((c) => c.node));
    cards.forEach((c, r) => (c.nodeIndex = l.nodeOf[r]!));
    this.#layout = l;
    this.place.nodeIndex = l.nodeOf[p.rank]!;
    this.place.nnodes = l.ranksOf.length;
    wireupStats().localCards += cards.length;
    return new Map(cards.map((c, r) => [r, c]));
  }

  abort(code: number, message: string): void {
    this.#pmix.abort(code, message);
  }

  finalize(): Promise<void> {
    this.#pmix.finalize();
    return Promise.resolve();
  }
}

class SingletonWireup implements Wireup {
  readonly kind = 'singleton';
  readonly reportWaits = null;
  readonly place: JobPlace = { rank: 0, size: 1, localRank: 0, localSize: 1, jobId: 'singleton', node: hostname(), secret: '', controlFd: null, nodeIndex: 0, nnodes: 1, agent: null };
  readonly layout: JobLayout = { nodeOf: new Int32Array(1), ranksOf: [[0]] };
  readonly fetchCardsSync = null;

  exchange(mine: PeerCard): Promise<Map<number, PeerCard>> {
    return Promise.resolve(new Map([[0, mine]]));
  }

  fetchCards(): Promise<PeerCard[]> {
    return Promise.reject(new MprunError('ERR_MPRUN_ARG', 'a world of one has no other cards'));
  }
  abort(): void {}

  finalize(): Promise<void> {
    return Promise.resolve();
  }
}

/** mprun's launch environment first, then a PMIx server, else a world of one. */
export function openWireup(): Wireup {
  const mprun = mprunPlace();
  if (mprun !== null) return new MprunWireup(mprun);
  if (process.env.PMIX_NAMESPACE !== undefined && process.env.PMIX_NAMESPACE !== '') {
    const why = PmixClient.available();
    if (!why.ok) throw new MprunError('ERR_MPRUN_UNSUPPORTED', `started by a PMIx server, but PMIx cannot be used: ${why.reason}`);
    return new PmixWireup(PmixClient.connect());
  }
  return new SingletonWireup();
}
