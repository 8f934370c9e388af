/**
 * How a rank joins its job (init): its place from the launcher's
 * environment, its memory (the symmetric heap and collective scratch, shared
 * so that node peers can attach them), the wire-up (every rank's business
 * card through the job controller), then one endpoint per rank bound by the
 * transport registry, and the World over them.
 */
import { hostname } from 'node:os';
import { MprunError } from '../core/errors.js';
import { native } from '../native/index.js';
import { allocShared } from '../transports/shm/arena.js';
import { ControlSegment } from '../transports/shm/control.js';
import { NodeQueues } from '../transports/shm/queue.js';
import { ShmMessages } from '../transports/shm/messages.js';
import type { Endpoint } from '../transports/endpoint.js';
import { bindEndpoints, openLinks, planTransports, type PeerCard } from '../transports/registry.js';
import * as xpmem from '../transports/xpmem/index.js';
import { readConfig } from './config.js';
import { ControlClient } from './control.js';
import { Messenger } from './p2p.js';
import { Waiter } from './wait.js';
import { World } from './world.js';

export interface JobEnvironment {
  rank: number;
  size: number;
  localRank: number;
  localSize: number;
  controller: string | null;
  secret: string;
  controlFd: number | null;
  jobId: string;
  nodeIndex: number;
  nnodes: number;
  /** This node's agent's data address, for the ranks of other nodes and shared variables. */
  agent: string | null;
}

/** The job as mprun describes it to a rank (MPRUN_*), or null outside mprun. */
export function jobEnvironment(): JobEnvironment | null {
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
    nodeIndex: e.MPRUN_NODE_INDEX === undefined ? 0 : num('MPRUN_NODE_INDEX'),
    nnodes: e.MPRUN_NNODES === undefined ? 1 : num('MPRUN_NNODES'),
    agent: e.MPRUN_AGENT_ADDR ?? null,
  };
}

const SINGLETON: JobEnvironment = { rank: 0, size: 1, localRank: 0, localSize: 1, controller: null, secret: '', controlFd: null, jobId: 'singleton', nodeIndex: 0, nnodes: 1, agent: null };

let current: World | null = null;
let pending: Promise<World> | null = null;

/** Joins the job (or, outside mprun, makes a world of size 1). Idempotent. */
export function init(): Promise<World> {
  if (current !== null) return Promise.resolve(current);
  pending ??= start().then((w) => (current = w));
  return pending;
}

/** The node's control segment: inherited from the agent, or this rank's own outside mprun. */
function openControl(env: JobEnvironment, queueBytes: number, teamSlots: number): { ctrl: ControlSegment; owned: boolean } {
  if (env.controlFd !== null) {
    const ctrl = ControlSegment.open(env.controlFd);
    if (ctrl.nlocal !== env.localSize) throw new MprunError('ERR_MPRUN_ARG', `the control segment is for ${ctrl.nlocal} ranks, but MPRUN_LOCAL_SIZE is ${env.localSize}`);
    if (ctrl.teamSlots !== teamSlots) throw new MprunError('ERR_MPRUN_ARG', `the control segment has ${ctrl.teamSlots} team slots, but MPRUN_TEAM_SLOTS is ${teamSlots}; set it for mprun, not per rank`);
    return { ctrl, owned: false };
  }
  const made = ControlSegment.create(1, queueBytes, teamSlots);
  native().closeFd(made.fd);
  return { ctrl: made.segment, owned: true };
}

async function start(): Promise<World> {
  const env = jobEnvironment() ?? SINGLETON;
  const config = readConfig(env.localSize);
  native().allowPtraceAny();
  const { ctrl, owned } = openControl(env, config.queueBytes, config.teamSlots);
  Atomics.store(ctrl.i32, ctrl.pidIndex(env.localRank), process.pid);
  const heap = allocShared(config.heapBytes, 'mprun-heap');
  const scratch = allocShared(config.teamSlots * 2 * config.collBankBytes, 'mprun-coll');
  const node = process.env.MPRUN_NODE_NAME ?? hostname();
  const heapSegid = xpmem.make(heap, 0o600);
  // For the node agent, which serves other nodes' puts and gets on it.
  ctrl.publishHeap(env.localRank, heapSegid, heap.byteLength);
  const mine: PeerCard = {
    pid: process.pid,
    node,
    localRank: env.localRank,
    heapSegid: heapSegid.toString(),
    heapBytes: heap.byteLength,
    heapAddress: native().addressOf(heap).toString(),
    collSegid: xpmem.make(scratch, 0o600).toString(),
    collBytes: scratch.byteLength,
    nodeIndex: env.nodeIndex,
    agent: env.nnodes > 1 ? env.agent : null,
  };

  let cards: PeerCard[] = [mine];
  let client: ControlClient | null = null;
  if (env.size > 1 || env.controller !== null) {
    if (env.controller === null) throw new MprunError('ERR_MPRUN_ARG', 'MPRUN_CONTROLLER is not set; start the job with mprun');
    client = await ControlClient.connect(env.controller, env.secret, env.rank);
    client.put(`card:${env.rank}`, mine);
    const kv = await client.fence();
    cards = [];
    for (let r = 0; r < env.size; r++) {
      const c = kv[`card:${r}`] as PeerCard | undefined;
      if (c === undefined) throw new MprunError('ERR_MPRUN_PROTOCOL', `rank ${r} put no business card`);
      cards.push(c);
    }
    client.unref();
  }

  const plan = planTransports({ rank: env.rank, node }, cards);
  // One connection per other node, to its agent, made now so that a node we cannot reach fails init.
  const links = await openLinks(plan, cards, env.secret, env.rank);
  const waiter = new Waiter(ctrl, env.localRank, config.spinMicros, config.yieldWhileSpinning, config.blockSliceMs);
  if (client !== null) {
    const c = client;
    waiter.reportWaits(config.hangReportMs, (waits) => c.waits(waits));
  }
  // A rank waiting on shared memory must let its event loop read replies from other nodes.
  if (links !== null) waiter.network(() => links.busy(), () => links.progress());
  const inbox = new NodeQueues(ctrl, env.localRank);
  const shm = new ShmMessages(inbox, config.eagerLimit, env.localSize);
  const worldOfLocal = cards.map((c, r) => [c, r] as const).filter(([c]) => c.node === node).sort(([a], [b]) => a.localRank - b.localRank).map(([, r]) => r);
  const endpoints: Endpoint[] = [];
  const messenger = new Messenger({ size: env.size, inbox, waiter, endpoints, worldOfLocal, shm, others: [], recvPollNs: config.recvPollNs });
  endpoints.push(...bindEndpoints(plan, cards, { rank: env.rank, node, heap, scratch, ctrl, shm, loopback: messenger, links }));
  if (config.debug) {
    process.stderr.write(`mprun[${env.rank}]: pid ${process.pid} node ${node}; peers: ${endpoints.map((e, r) => `${r}:${e.name}`).join(' ')}\n`);
  }
  const world = new World({ env, config, ctrl, ownsCtrl: owned, heap, cards, endpoints, client, waiter, messenger, links, transports: [shm] });
  // A rank that returns from its program without finalize still finalizes,
  // so that its peers' last collective completes.
  process.once('beforeExit', () => {
    if (!world.finalized) void world.finalize();
  });
  return world;
}
