/**
 * Where a rank learns its place in the job and its peers' business cards:
 * mprun's job controller (a PMI-like key-value store with a fence), or any
 * PMIx server (`srun --mpi=pmix`, Open MPI's `mpirun`: direct launch).
 * Launch environments decide which: mprun's own variables first (a job mprun
 * started inside an srun step still bootstraps from mprun), then PMIx, else
 * a world of one.
 */
import { hostname } from 'node:os';
import { MprunError } from '../core/errors.js';
import type { PeerCard } from '../transports/registry.js';
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
  /** Publishes this rank's card; resolves with every rank's, in rank order. */
  exchange(mine: PeerCard): Promise<PeerCard[]>;
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

/** mprun's controller: cards put, then a fence that hands every rank every card. */
class MprunWireup implements Wireup {
  readonly kind = 'mprun';
  readonly place: JobPlace;
  readonly #controller: string | null;
  #client: ControlClient | null = null;
  reportWaits: ((waits: WaitReport[]) => void) | null = null;

  constructor(place: JobPlace & { controller: string | null }) {
    this.place = place;
    this.#controller = place.controller;
  }

  async exchange(mine: PeerCard): Promise<PeerCard[]> {
    const { rank, size, secret } = this.place;
    if (this.#controller === null && size === 1) return [mine];
    if (this.#controller === null) throw new MprunError('ERR_MPRUN_ARG', 'MPRUN_CONTROLLER is not set; start the job with mprun');
    const client = await ControlClient.connect(this.#controller, secret, rank);
    this.#client = client;
    this.reportWaits = (waits) => client.waits(waits);
    client.put(`card:${rank}`, mine);
    const kv = await client.fence();
    const cards: PeerCard[] = [];
    for (let r = 0; r < size; r++) {
      const c = kv[`card:${r}`] as PeerCard | undefined;
      if (c === undefined) throw new MprunError('ERR_MPRUN_PROTOCOL', `rank ${r} put no business card`);
      cards.push(c);
    }
    client.unref();
    return cards;
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

  constructor(pmix: PmixClient) {
    this.#pmix = pmix;
    this.place = {
      rank: pmix.rank,
      size: pmix.size,
      localRank: pmix.localRank,
      localSize: pmix.localSize,
      jobId: pmix.nspace,
      node: pmix.nodeName,
      secret: '',
      controlFd: null,
      // Known once the cards are in (exchange()).
      nodeIndex: 0,
      nnodes: 1,
      agent: null,
    };
  }

  async exchange(mine: PeerCard): Promise<PeerCard[]> {
    const p = this.#pmix;
    p.putCard(mine);
    p.commit();
    await p.fence({ collect: true });
    const cards: PeerCard[] = [];
    for (let r = 0; r < p.size; r++) {
      const c = (r === p.rank ? mine : p.cardIfPresent(r) ?? (await p.getCard(r))) as PeerCard | null;
      if (c === null) throw new MprunError('ERR_MPRUN_PROTOCOL', `rank ${r} put no business card`);
      cards.push(c);
    }
    // Node indices in order of each node's first rank, the same on every rank.
    const nodes = [...new Set(cards.map((c) => c.node))];
    for (const c of cards) c.nodeIndex = nodes.indexOf(c.node);
    this.place.nodeIndex = nodes.indexOf(this.place.node);
    this.place.nnodes = nodes.length;
    return cards;
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

  exchange(mine: PeerCard): Promise<PeerCard[]> {
    return Promise.resolve([mine]);
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
