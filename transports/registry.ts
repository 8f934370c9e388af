/**
 * The transports of this build, and the only module that names them (UCX's
 * uct component list, Open MPI's MCA framework): each says what it reaches
 * (and if not, why), offers the attributes the selector models, a cheap
 * availability probe for `mprun info`, and binds an endpoint to a peer from
 * the peer's business card. openPeers() makes one endpoint per rank (bound
 * at init for node peers, on first use for other nodes': peers.ts) and the
 * World from then on calls only the endpoints.
 */
import { availableParallelism } from 'node:os';
import { MprunError } from '../core/errors.js';
import type { Endpoint, EndpointCaps, MessageSink } from './endpoint.js';
import { selectTransport, type PeerLocation, type TransportCandidate } from './select.js';
import { SelfEndpoint } from './self.js';
import { ShmEndpoint, shmCaps } from './shm/endpoint.js';
import type { ControlSegment } from './shm/control.js';
import type { ShmMessages } from './shm/messages.js';
import { DsmEndpoint } from './dsm/endpoint.js';
import { AgentLinks } from './dsm/links.js';
import { setAmoSpin } from './dsm/amo.js';
import { PeerTable } from './peers.js';
import { SharedMemory, type SharedContext } from './dsm/shared.js';
import { backendName, LazyAttachment } from './xpmem/index.js';
import { progressSpinMicros, query as ucxQuery, UCX_TCP_BANDWIDTH, UCX_TCP_LATENCY, UcxTransport, type UcxCard } from './ucx/index.js';

/** What a rank publishes at wire-up, for its peers to bind endpoints to it. */
export interface PeerCard {
  pid: number;
  node: string;
  localRank: number;
  /** The heap and collective scratch as XPMEM segments (node peers attach them), and the heap's address (CMA). */
  heapSegid: string;
  heapBytes: number;
  heapAddress: string;
  collSegid: string;
  collBytes: number;
  /** This node's index in the job, and its agent's data address (null for a one-node job). */
  nodeIndex: number;
  agent: string | null;
  /**
   * Under direct launch (no mprun agent), local rank 0 makes the node's control
   * segment: its pid and descriptor, for the others to open through /proc.
   */
  segment?: { pid: number; fd: number };
  /** The rank's UCX worker address and heap key (null: it did not open UCX). */
  ucx: UcxCard | null;
}

export { PeerTable, wireupStats, type WireupStats } from './peers.js';

/** Where a rank runs, as the World groups ranks (known for every rank from the job's layout, no card needed). */
export type PeerPlace = Pick<PeerCard, 'node' | 'localRank' | 'nodeIndex'>;

/** This rank's side of its transports, which endpoints are bound against. */
export interface RankTransports {
  rank: number;
  node: string;
  heap: ArrayBuffer;
  scratch: ArrayBuffer;
  ctrl: ControlSegment;
  shm: ShmMessages;
  /** Where the rank's messages to itself go. */
  loopback: MessageSink;
  /** Connections to other nodes' agents (null: a one-node job). */
  links: AgentLinks | null;
  /** The rank's UCX worker (null: not opened, --net tcp or a one-node job). */
  ucx: UcxTransport | null;
}

export interface TransportStatus {
  available: boolean;
  /** Why not, or which backend. */
  detail: string;
  /** What an endpoint bound now would do. */
  caps: EndpointCaps | null;
}

export interface RegisteredTransport extends TransportCandidate {
  /** What it reaches, for mprun info. */
  readonly scope: string;
  /** Cheap; never throws. */
  query(): TransportStatus;
  bind(rank: number, card: PeerCard, mine: RankTransports): Endpoint;
}

const SELF: RegisteredTransport = {
  name: 'self',
  scope: 'the rank itself',
  attrs: { latency: 2e-8, bandwidth: 40e9 },
  reach: (self, peer) => (self.rank === peer.rank ? { ok: true } : { ok: false, reason: 'not this rank' }),
  query: () => ({ available: true, detail: 'available', caps: SelfEndpoint.caps }),
  bind: (_rank, _card, mine) => new SelfEndpoint(mine.rank, mine.heap, mine.scratch, mine.loopback),
};

const XPMEM: RegisteredTransport = {
  name: 'xpmem',
  scope: 'ranks on the same node',
  attrs: { latency: 3e-7, bandwidth: 11e9 },
  reach: (self, peer) => (self.node === peer.node ? { ok: true } : { ok: false, reason: `rank ${peer.rank} is on node ${peer.node}, not ${self.node}` }),
  query: () => {
    const b = backendName();
    return b === null ? { available: false, detail: 'UNAVAILABLE: no backend', caps: null } : { available: true, detail: `available, backend ${b}`, caps: shmCaps(b) };
  },
  bind: (rank, card, mine) => {
    const backend = backendName();
    if (backend === null) throw new MprunError('ERR_MPRUN_UNREACHABLE', `rank ${rank} is on this node, but no XPMEM backend is available here (see mprun info)`, { rank });
    // Attached on first use: a rank maps only the peers it touches (issue 13).
    const peer = { rank, localRank: card.localRank, pid: card.pid, heap: new LazyAttachment(card.heapSegid, card.heapBytes), scratch: new LazyAttachment(card.collSegid, card.collBytes), heapAddress: BigInt(card.heapAddress) };
    return new ShmEndpoint(peer, mine.ctrl, mine.shm, backend);
  },
};

/** Ranks on other nodes, through their node agent over TCP (latency and bandwidth over a veth pair here). */
const DSM: RegisteredTransport = {
  name: 'dsm',
  scope: 'ranks on other nodes, through their node agent over TCP (jobs with --host, --hostfile or Slurm)',
  attrs: { latency: 4e-5, bandwidth: 1.5e9 },
  reach: (self, peer) => {
    if (self.node === peer.node) return { ok: false, reason: 'same node' };
    if (peer.agent === null || peer.agent === undefined) return { ok: false, reason: `rank ${peer.rank}'s node ${peer.node} has no agent serving data (the job was not started across nodes)` };
    return { ok: true };
  },
  query: () => ({ available: true, detail: 'available', caps: DsmEndpoint.caps }),
  bind: (rank, card, mine) => {
    const link = mine.links?.of(card.nodeIndex) ?? null;
    if (link === null) throw new MprunError('ERR_MPRUN_UNREACHABLE', `rank ${rank} on node ${card.node}: no connection to its agent`, { rank });
    return new DsmEndpoint(link, rank, mine.rank);
  },
};

/** Ranks on other nodes over UCX (issue 12): RDMA where the site has it; here its TCP transport between namespace nodes. */
const UCX: RegisteredTransport = {
  name: 'ucx',
  scope: 'ranks on other nodes, through UCX (mprun --net ucx, or auto when libucp is usable; direct launch)',
  attrs: { latency: UCX_TCP_LATENCY, bandwidth: UCX_TCP_BANDWIDTH },
  reach: (self, peer) => {
    if (self.node === peer.node) return { ok: false, reason: 'same node' };
    if (peer.ucx !== true) return { ok: false, reason: `rank ${peer.rank} opened no UCX worker (--net tcp, or UCX unusable there)` };
    return { ok: true };
  },
  query: () => {
    const q = ucxQuery();
    return { available: q.available, detail: q.available ? `available, UCX ${q.version} (${q.transports.join(',')})` : `UNAVAILABLE: ${q.reason}`, caps: null };
  },
  bind: (rank, card, mine) => {
    if (mine.ucx === null || card.ucx === null) throw new MprunError('ERR_MPRUN_UNREACHABLE', `rank ${rank} on node ${card.node}: UCX is not open on both sides`, { rank });
    return mine.ucx.connect(rank, card.ucx);
  },
};

export const TRANSPORTS: readonly RegisteredTransport[] = [SELF, XPMEM, DSM, UCX];

/** Which network reaches other nodes: mprun --net (MPRUN_NET): ucx, tcp (the agents), or auto (UCX when usable). */
export type NetChoice = 'auto' | 'ucx' | 'tcp';

/** MPRUN_NET as given (mprun --net), checked; `fallback` when unset. */
export function netChoice(value: string | undefined, fallback: NetChoice): NetChoice {
  const v = value === undefined || value === '' ? fallback : value;
  if (v !== 'auto' && v !== 'ucx' && v !== 'tcp') throw new MprunError('ERR_MPRUN_ARG', `MPRUN_NET (mprun --net) is ucx, tcp or auto, not '${v}'`);
  return v;
}

/**
 * The rank's UCX worker, with its heap registered, when it should have one:
 * for --net ucx (an error naming why when UCX cannot be used), and for auto
 * when the job spans nodes and libucp is usable; else null.
 */
export function openUcx(net: NetChoice, spansNodes: boolean, rank: number, size: number, localSize: number, heap: ArrayBuffer, sink: MessageSink): UcxTransport | null {
  if (net === 'tcp' || !spansNodes) return null;
  const q = ucxQuery();
  if (!q.available) {
    if (net === 'ucx') throw new MprunError('ERR_MPRUN_UNSUPPORTED', `--net ucx: UCX is not usable here: ${q.reason}`);
    return null;
  }
  return UcxTransport.open({ rank, heap, sink, estimatedEps: size, progressSpinMicros: progressSpinMicros(localSize, availableParallelism()) });
}

export type { AgentLinks, SharedMemory };

/** Shared variables and semaphores across the job's nodes (DSM), over the rank's links to the other nodes' agents (opened on first use). */
export function openSharedMemory(links: AgentLinks | null, context: Omit<SharedContext, 'linkOf'>): SharedMemory {
  return new SharedMemory({ ...context, linkOf: (n) => links?.linkTo(n) ?? null });
}

/** The transport for a peer at `peer` seen from `me`, or an error naming the peer and every reason. */
export function planPeer(me: PeerLocation, peer: PeerLocation, net: NetChoice = 'auto'): RegisteredTransport {
  // --net picks the network for other nodes; auto lets the selector model them (UCX is faster where both reach).
  const candidates = TRANSPORTS.filter((t) => (net === 'ucx' ? t !== DSM : net === 'tcp' ? t !== UCX : true));
  const sel = selectTransport(me, peer, candidates);
  if (!sel.ok) throw new MprunError('ERR_MPRUN_UNREACHABLE', `rank ${peer.rank} is unreachable: ${sel.reasons.join('; ')}`, { rank: peer.rank });
  return candidates.find((t) => t.name === sel.transport)!;
}

export interface PeersOptions {
  mine: RankTransports;
  net: NetChoice;
  /** This rank's node name and the node index of every rank (the job's layout: no card needed). */
  node: string;
  nodeOf: Int32Array;
  ranksOf: readonly (readonly number[])[];
  /** Cards known at init: this node's ranks (all ranks where the wire-up had to collect them all). */
  known: ReadonlyMap<number, PeerCard>;
  fetch(ranks: readonly number[]): Promise<PeerCard[]>;
  fetchSync: ((ranks: readonly number[]) => PeerCard[]) | null;
  /** The job's nodes run agents (mprun across nodes): the links to them are made on first use. */
  agents: boolean;
  secret: string;
  /** How long this rank polls before it sleeps (MPRUN_SPIN_US): its waits for the agents' native thread too. */
  spinMicros: number;
}

/**
 * The rank's endpoints and links (issue 12.4): node peers bound now, other
 * nodes' ranks when first used or prepared, each planned by its node (from the
 * layout) until its card is here, then by its card.
 */
export function openPeers(o: PeersOptions): { peers: PeerTable; links: AgentLinks | null } {
  const me = o.mine.rank;
  const myIndex = o.nodeOf[me]!;
  let table: PeerTable | null = null;
  setAmoSpin(o.spinMicros);
  const links = o.agents ? new AgentLinks(o.secret, me, (n) => table!.agentOf(n)) : null;
  const mine = { ...o.mine, links };
  table = new PeerTable({
    mine,
    nodeOf: o.nodeOf,
    known: o.known,
    links,
    fetch: o.fetch,
    fetchSync: o.fetchSync,
    firstOf: (n) => o.ranksOf[n]![0]!,
    planned: (r) => planPeer({ rank: me, node: `#${myIndex}` }, { rank: r, node: `#${o.nodeOf[r]}`, agent: o.agents ? 'on first use' : null, ucx: mine.ucx !== null }, o.net),
    plan: (r, card) => planPeer({ rank: me, node: o.node }, { rank: r, node: card.node, agent: card.agent, ucx: card.ucx !== null && card.ucx !== undefined }, o.net),
  });
  return { peers: table, links };
}
