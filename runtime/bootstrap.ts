/**
 * How a rank joins its job (init): its place and the job's layout from the
 * launcher's environment, its memory (the symmetric heap and collective
 * scratch, shared so that node peers can attach them), the wire-up (its card
 * out, its node's cards in, through mprun's job controller or a PMIx server:
 * wireup.ts), then one endpoint per rank (transports/peers.ts: node peers
 * bound now, other nodes' ranks on first use) and the World over them. The
 * world's collective partners on other nodes (O(log nodes) for a node's
 * first rank, none for the others) are bound before init returns, so that
 * synchronous collectives (alloc, split) find them ready.
 */
import { MprunError } from '../core/errors.js';
import { native } from '../native/index.js';
import { allocShared } from '../transports/shm/arena.js';
import { ControlSegment } from '../transports/shm/control.js';
import { NodeQueues } from '../transports/shm/queue.js';
import { ShmMessages } from '../transports/shm/messages.js';
import type { Endpoint } from '../transports/endpoint.js';
import { netChoice, openPeers, openUcx, wireupStats, type PeerCard } from '../transports/registry.js';
import { watchAbort } from './abort-watch.js';
import { leaderPeers } from './coll/peers.js';
import type { MessageSink } from '../transports/endpoint.js';
import * as xpmem from '../transports/xpmem/index.js';
import { readConfig } from './config.js';
import { openWireup, type JobPlace } from './wireup.js';
import { Messenger } from './p2p.js';
import { Waiter } from './wait.js';
import { World } from './world.js';
import { warmUp } from './warmup.js';

let current: World | null = null;
let pending: Promise<World> | null = null;

/** Joins the job (or, outside mprun, makes a world of size 1). Idempotent. */
export function init(): Promise<World> {
  if (current !== null) return Promise.resolve(current);
  pending ??= start().then((w) => (current = w));
  return pending;
}

/**
 * The node's control segment (message queues, doorbells, team flags):
 * inherited from mprun's agent; under direct launch made by local rank 0 and
 * opened by its node peers through /proc once the cards are in; else this
 * rank's own.
 */
function openControl(place: JobPlace, direct: boolean, queueBytes: number, teamSlots: number): { ctrl: ControlSegment | null; owned: boolean; fd: number | null } {
  if (place.controlFd !== null) {
    const ctrl = ControlSegment.open(place.controlFd);
    checkControl(ctrl, place.localSize, teamSlots);
    return { ctrl, owned: false, fd: null };
  }
  if (direct && place.localSize > 1 && place.localRank !== 0) return { ctrl: null, owned: false, fd: null };
  const made = ControlSegment.create(place.localSize, queueBytes, teamSlots);
  if (direct && place.localSize > 1) return { ctrl: made.segment, owned: true, fd: made.fd };
  native().closeFd(made.fd);
  return { ctrl: made.segment, owned: true, fd: null };
}

function checkControl(ctrl: ControlSegment, localSize: number, teamSlots: number): void {
  if (ctrl.nlocal !== localSize) throw new MprunError('ERR_MPRUN_ARG', `the control segment is for ${ctrl.nlocal} ranks, but this node has ${localSize}`);
  if (ctrl.teamSlots !== teamSlots) throw new MprunError('ERR_MPRUN_ARG', `the control segment has ${ctrl.teamSlots} team slots, but MPRUN_TEAM_SLOTS is ${teamSlots}; set it for the whole job, not per rank`);
}

/** Local rank 0's segment, from its card (direct launch). */
function openPeerControl(cards: Iterable<PeerCard>, place: JobPlace, teamSlots: number): ControlSegment {
  const owner = [...cards].find((c) => c.node === place.node && c.localRank === 0);
  if (owner?.segment === undefined) throw new MprunError('ERR_MPRUN_PROTOCOL', `local rank 0 of node ${place.node} published no control segment`);
  const fd = native().openPeerFd(owner.segment.pid, owner.segment.fd);
  try {
    const ctrl = ControlSegment.open(fd);
    checkControl(ctrl, place.localSize, teamSlots);
    return ctrl;
  } finally {
    native().closeFd(fd);
  }
}

/** This rank's pid and heap in the node's control segment (the node agent serves other nodes' puts and gets on it). */
function publish(ctrl: ControlSegment, place: JobPlace, heapSegid: bigint, bytes: number): void {
  Atomics.store(ctrl.i32, ctrl.pidIndex(place.localRank), process.pid);
  ctrl.publishHeap(place.localRank, heapSegid, bytes);
}

async function start(): Promise<World> {
  const wireup = openWireup();
  const place = wireup.place;
  const direct = wireup.kind === 'pmix';
  const config = readConfig(place.localSize);
  native().allowPtraceAny();
  const made = openControl(place, direct, config.queueBytes, config.teamSlots);
  const heap = allocShared(config.heapBytes, 'mprun-heap');
  const scratch = allocShared(config.teamSlots * 2 * config.collBankBytes, 'mprun-coll');
  const node = place.node;
  const heapSegid = xpmem.make(heap, 0o600);
  const mine: PeerCard = {
    pid: process.pid,
    node,
    localRank: place.localRank,
    heapSegid: heapSegid.toString(),
    heapBytes: heap.byteLength,
    heapAddress: native().addressOf(heap).toString(),
    collSegid: xpmem.make(scratch, 0o600).toString(),
    collBytes: scratch.byteLength,
    nodeIndex: place.nodeIndex,
    agent: place.nnodes > 1 ? place.agent : null,
    ...(made.fd !== null ? { segment: { pid: process.pid, fd: made.fd } } : {}),
    ucx: null,
  };
  // The network to other nodes (mprun --net): UCX's card goes out with the rest.
  // Its messages reach the matching engine, made once the cards are in.
  // Default: under mprun its own TCP through the agents: UCX over TCP is faster (the README's
  // cross-node table) but needs UCX_NET_DEVICES on multi-homed nodes and misfires between hosts
  // that share a kernel (README, "The default network"); under direct launch there are no
  // agents, so UCX when usable.
  const net = netChoice(process.env.MPRUN_NET, direct ? 'auto' : 'tcp');
  let matching: MessageSink | null = null;
  const sink: MessageSink = { arrived: (source, tag, dtype, payload) => matching!.arrived(source, tag, dtype, payload) };
  const ucx = openUcx(net, place.localSize < place.size, place.rank, place.size, place.localSize, heap, sink);
  mine.ucx = ucx?.card ?? null;
  // Before the card goes out: a peer that has it may put into this heap through the node agent at once.
  if (made.ctrl !== null) publish(made.ctrl, place, heapSegid, heap.byteLength);
  const local = await wireup.exchange(mine);
  const ctrl = made.ctrl ?? openPeerControl(local.values(), place, config.teamSlots);
  if (made.ctrl === null) publish(ctrl, place, heapSegid, heap.byteLength);

  const layout = wireup.layout;
  const waiter = new Waiter(ctrl, place.localRank, config.spinMicros, config.yieldWhileSpinning, config.blockSliceMs);
  watchAbort(() => !ctrl.unmapped && ctrl.aborted());
  if (wireup.reportWaits !== null) waiter.reportWaits(config.hangReportMs, wireup.reportWaits);
  const inbox = new NodeQueues(ctrl, place.localRank);
  const shm = new ShmMessages(inbox, config.eagerLimit, place.localSize);
  const worldOfLocal = [...local].filter(([, c]) => c.node === node).sort(([, a], [, b]) => a.localRank - b.localRank).map(([r]) => r);
  const endpoints: Endpoint[] = [];
  const messenger = new Messenger({ size: place.size, inbox, waiter, endpoints, worldOfLocal, shm, others: ucx === null ? [] : [ucx], recvPollNs: config.recvPollNs, recvFastPollNs: config.recvFastPollNs });
  matching = messenger;
  const { peers, links } = openPeers({
    mine: { rank: place.rank, node, heap, scratch, ctrl, shm, loopback: messenger, links: null, ucx },
    net,
    node,
    nodeOf: layout.nodeOf,
    ranksOf: layout.ranksOf,
    known: local,
    fetch: (ranks) => wireup.fetchCards(ranks),
    fetchSync: wireup.fetchCardsSync,
    agents: place.nnodes > 1 && place.agent !== null,
    secret: place.secret,
    spinMicros: config.spinMicros,
  });
  endpoints.push(...peers.endpoints);
  // A rank waiting on shared memory must let its event loop read replies from other nodes (and cards, and new links).
  // UCX completions are delivered by its progress(), which every wait drives; a rank asleep wakes to poll them.
  if (links !== null || ucx !== null || place.nnodes > 1) {
    waiter.network(
      () => (links?.busy() ?? false) || (ucx?.busy() ?? false) || peers.busy(),
      () => links?.progress(),
      () => (links?.busy() ?? false) || peers.busy(),
    );
  }
  // A synchronous wait runs no event loop: endpoints still binding on first use are bound blocking first.
  if (place.nnodes > 1) waiter.beforeBlocking((what) => peers.bindPendingSync(what));
  // Without UCX's progress thread, a rank arms its worker before it sleeps: the wake thread then rings it.
  if (ucx !== null && !ucx.progressThread) waiter.beforeSleep(() => ucx.arm());
  // The world's collective partners on other nodes, now (alloc and split are synchronous).
  await peers.prepare(leaderPeers(Array.from(layout.nodeOf), place.rank));
  if (config.debug) {
    const s = wireupStats();
    process.stderr.write(`mprun[${place.rank}]: pid ${process.pid} node ${node} (${wireup.kind}); peers: ${endpoints.map((e, r) => `${r}:${e.name}`).join(' ')}; wire-up: ${s.localCards} local cards, ${s.cardsFetched} fetched, ${s.linksOpened} links\n`);
  }
  const places = Array.from(layout.nodeOf, (n, r) => ({ node: local.get(r)?.node ?? `#${n}`, localRank: local.get(r)?.localRank ?? -1, nodeIndex: n }));
  const world = new World({ place, config, ctrl, ownsCtrl: made.owned, heap, cards: places, endpoints, wireup, waiter, messenger, links, peers, transports: ucx === null ? [shm] : [shm, ucx] });
  // A rank that returns from its program without finalize still finalizes,
  // so that its peers' last collective completes.
  process.once('beforeExit', () => {
    if (!world.finalized) void world.finalize();
  });
  await warmUp(world, config.warmupRounds);
  return world;
}
