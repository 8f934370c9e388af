/**
 * What bootstrap hands the World (runtime/bootstrap.ts builds it), and the
 * context every team of that world shares (runtime/team.ts): the node's
 * control segment, the waits, where each rank is, and the collective settings.
 */
import { MprunError } from '../core/errors.js';
import type { Endpoint, TransportInstance } from '../transports/endpoint.js';
import type { ControlSegment } from '../transports/shm/control.js';
import type { AgentLinks, PeerPlace, PeerTable } from '../transports/registry.js';
import type { RuntimeConfig } from './config.js';
import type { Messenger } from './p2p.js';
import type { Waiter } from './wait.js';
import type { ShmTeamLayout } from './coll/shm-rounds.js';
import type { JobPlace, Wireup } from './wireup.js';

/** What bootstrap hands the World. @internal */
export interface WorldParts {
  place: JobPlace;
  config: RuntimeConfig;
  /** The node's control segment (team flags), and whether this rank made it (and so unmaps it). */
  ctrl: ControlSegment;
  ownsCtrl: boolean;
  heap: ArrayBuffer;
  /** Where every rank runs, and the endpoint for it (bound on first use for other nodes' ranks). */
  cards: readonly PeerPlace[];
  endpoints: readonly Endpoint[];
  /** Binds other nodes' ranks ahead of a team's collectives (issue 12.4). */
  peers: Pick<PeerTable, 'prepare' | 'prepareSync'>;
  /** How this rank joined (mprun's controller or a PMIx server): abort and finalize go there too. */
  wireup: Wireup;
  waiter: Waiter;
  messenger: Messenger;
  /** Connections to other nodes' agents (null: a one-node job); also serve the shared variables. */
  links: AgentLinks | null;
  /** This rank's transport instances, closed at finalize. */
  transports: readonly TransportInstance[];
}

/**
 * The teams' context over `parts`: `checkLive` throws once the world is
 * finalized, `isLive` says whether it still is; team slots from `firstSlot`
 * on are free for teams made later (the world's and the node's come before).
 */
export function teamContext(parts: WorldParts, localRankOf: (w: number) => number, checkLive: () => void, isLive: () => boolean, firstSlot: number): TeamContext {
  const { config, cards, endpoints } = parts;
  return {
    ctrl: parts.ctrl,
    waiter: parts.waiter,
    checkLive,
    worldRank: parts.place.rank,
    localRankOf,
    nodeOf: (w) => cards[w]!.nodeIndex,
    messenger: () => parts.messenger,
    prepare: (ranks) => parts.peers.prepare(ranks),
    prepareSync: (ranks, what) => parts.peers.prepareSync(ranks, what),
    arenaOf: (w) => {
      const a = endpoints[w]!.mapScratch();
      if (a === null) throw new MprunError('ERR_MPRUN_UNSUPPORTED', `rank ${w}'s collective scratch cannot be mapped here (${endpoints[w]!.name})`);
      return a;
    },
    bankBytes: config.collBankBytes,
    chunkBytes: config.collChunkBytes,
    pollNs: config.collPollNs,
    fastPollNs: config.collFastPollNs,
    isLive,
    spinYields: config.yieldWhileSpinning,
    slots: { next: firstSlot, count: config.teamSlots },
  };
}

/** What a team needs of its rank's runtime. @internal */
export interface TeamContext {
  ctrl: ControlSegment;
  waiter: Waiter;
  /** Throws when the rank's runtime is finalized (teams then have no memory to work in). */
  checkLive(): void;
  /** This rank's world rank. */
  worldRank: number;
  /** The node-local rank of a world rank, or -1 if it is on another node. */
  localRankOf(worldRank: number): number;
  /** The index of the node a world rank runs on. */
  nodeOf(worldRank: number): number;
  /** The rank's messenger (teams across nodes run their collectives over its internal messages). */
  messenger(): Messenger;
  /** Binds the endpoints of these world ranks (this member's network partners), ahead of its collectives; null when bound. */
  prepare?(worldRanks: readonly number[]): Promise<void> | null;
  /** The same, blocking, for a synchronous collective (or an error saying why it cannot). */
  prepareSync?(worldRanks: readonly number[], what: () => string): void;
  /** The collective arena of a world rank, mapped here. */
  arenaOf(worldRank: number): ArrayBuffer;
  bankBytes: number;
  chunkBytes: number;
  /** Nanoseconds a collective polls (bounded, driving progress) before it waits asynchronously. */
  pollNs: number;
  /** Nanoseconds the native fast paths of small collectives poll before they leave the rest to the steps. */
  fastPollNs: number;
  /** Whether the rank's runtime is live (checkLive() would not throw): its memory is mapped. */
  isLive(): boolean;
  /** Ranks outnumber cores: a spinning rank gives its core away. */
  spinYields: boolean;
  /** The next team slot this rank has not used, and how many there are. */
  slots: { next: number; count: number };
}

/** A team within one node: where its words and scratch are (its own region of every member's collective arena). */
export function shmTeamLayout(ctx: TeamContext, worldRanks: readonly number[], locals: readonly number[], me: number, slot: number): ShmTeamLayout {
  const scratchBytes = 2 * ctx.bankBytes;
  return {
    ctrl: ctx.ctrl,
    me,
    size: worldRanks.length,
    worldRanks,
    ackIndex: locals.map((l) => ctx.ctrl.teamAckIndex(l, slot)),
    dataIndex: locals.map((l) => ctx.ctrl.teamDataIndex(l, slot)),
    localRanks: locals,
    scratch: (j) => ctx.arenaOf(worldRanks[j]!),
    scratchOffset: slot * scratchBytes,
    scratchBytes,
    chunkBytes: ctx.chunkBytes,
    spinYields: ctx.spinYields,
  };
}
