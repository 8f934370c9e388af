/**
 * Configuration variables, declared once with their defaults and help, so that
 * `mprun info` can list them (as ompi_info lists MCA parameters). Read from the
 * environment: mprun forwards those set in its own (configVariables) and
 * `-x VAR=value` to every rank on every node.
 */
import { cpus } from 'node:os';
import { maxMappingBytes } from '../native/index.js';
import { controlLayout } from '../transports/shm/control.js';
import { MprunError } from '../core/errors.js';

export interface ConfigField {
  name: string;
  default: string;
  help: string;
  /** false: a node's own setting, not forwarded from mprun's environment to other nodes (configVariables). */
  forward?: false;
}

export const CONFIG_FIELDS: readonly ConfigField[] = [
  { name: 'MPRUN_HEAP_SIZE', default: '256M', help: 'bytes of symmetric heap per rank (suffixes K, M, G); world.alloc() draws from it' },
  { name: 'MPRUN_QUEUE_SIZE', default: '256K', help: "bytes of each rank's shared-memory message queue, which every rank of its node and the node agent write into (a power of two)" },
  { name: 'MPRUN_EAGER_LIMIT', default: '16K', help: 'largest message copied through the ring; larger ones are read by the receiver in a single copy (CMA)' },
  { name: 'MPRUN_TEAM_SLOTS', default: '32', help: 'how many teams (world, shared and splits) a rank can be in over a job' },
  { name: 'MPRUN_COLL_BANK', default: '1M', help: 'half the scratch per team and rank in the collective arena (it holds a ring of round slots)' },
  { name: 'MPRUN_COLL_CHUNK', default: '128K', help: 'bytes a reduction moves per round and rank; data movement rounds carry twice this (a slot)' },
  { name: 'MPRUN_COLL_REPRODUCIBLE', default: '0', help: "1: reductions of teams across nodes fold every contribution in team-rank order at one rank (bitwise the one-node result, whatever the node count; that rank receives every contribution); 0: O(log p) algorithms, whose float results may differ in the last bits with the node count or placement" },
  { name: 'MPRUN_SPIN_US', default: 'auto', help: 'microseconds a waiting rank polls before it sleeps on a futex (auto: 200, or 20 with yields when ranks outnumber cores)' },
  { name: 'MPRUN_RECV_POLL_NS', default: 'auto', help: "nanoseconds a receive polls before it is posted and awaited (auto: 3000, and the native receive's poll of the rank's queue MPRUN_SPIN_US when no other transport delivers messages; 0 when ranks outnumber cores)" },
  { name: 'MPRUN_COLL_POLL_US', default: 'auto', help: 'microseconds a collective polls before it waits asynchronously (auto: MPRUN_SPIN_US; when ranks outnumber cores, only the native fast path of small collectives polls, yielding the core)' },
  { name: 'MPRUN_WARMUP', default: '0', help: 'init() runs this many barriers, small allreduces and ring exchanges before it returns, so that the first calls of the program run compiled code (costs start-up time)' },
  { name: 'MPRUN_BLOCK_SLICE_MS', default: '20', help: 'longest a waiting rank stays asleep before it lets its event loop run' },
  { name: 'MPRUN_HANG_REPORT_MS', default: '1000', help: 'a rank blocked this long in one operation tells mprun what it waits in and where its program called it (printed on --timeout, SIGUSR1 and --report-hangs; mprun sets it from those)', forward: false },
  { name: 'MPRUN_XPMEM_BACKEND', default: '(best)', help: "force the XPMEM backend: kernel, shm or cma (a node's own: not forwarded to other nodes)", forward: false },
  { name: 'MPRUN_KILL_GRACE_MS', default: '2000', help: 'how long mprun waits after SIGTERM before it SIGKILLs the ranks of an aborting job' },
  { name: 'MPRUN_NET', default: 'tcp (auto under direct launch)', help: 'the network to other nodes: ucx, tcp (the node agents) or auto (UCX when usable); mprun --net sets it' },
  { name: 'MPRUN_DSM_NATIVE_AMO', default: '1', help: "0: one-sided operations across nodes (--net tcp) go through the node agents' JavaScript instead of their native thread (for comparison)" },
  { name: 'MPRUN_UCX_PUTS', default: '(by network)', help: 'am: puts over UCX as our own active messages (the default where UCX has only TCP), rma: as UCP puts (the default elsewhere)' },
  { name: 'MPRUN_UCX_PROGRESS_THREAD', default: '1', help: "0: no native thread progresses UCX while the rank computes (over TCP a computing target then stalls others' gets and atomics)" },
  { name: 'MPRUN_NODE_ARGS', default: '', help: 'extra Node.js flags for every rank, e.g. --cpu-prof or --trace-deopt (read by mprun)' },
  { name: 'MPRUN_DEBUG', default: '0', help: 'print the transport chosen for each peer (self, xpmem/<backend>, dsm) and wire-up steps to stderr' },
];

/**
 * The configuration variables set in mprun's environment, for every rank of
 * the job, as mpirun forwards the MCA parameters of its environment: an agent
 * started over ssh or srun on another node has not got that environment, and
 * ranks that disagree on, say, MPRUN_COLL_REPRODUCIBLE would run different
 * algorithms. Only the declared fields, and not a node's own (forward: false):
 * a parent job's MPRUN_RANK or secret never leaks into a job started from one
 * of its ranks.
 */
export function configVariables(environment: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of CONFIG_FIELDS) {
    const v = environment[f.name];
    if (v !== undefined && f.forward !== false) out[f.name] = v;
  }
  return out;
}

/** Parses a byte count with an optional K/M/G suffix (powers of 1024). */
export function parseBytes(text: string, what: string): number {
  const m = /^\s*(\d+)\s*([kKmMgG]?)[iI]?[bB]?\s*$/.exec(text);
  if (m === null) throw new RangeError(`${what} must be a byte count such as 65536, 64K or 1G, not '${text}'`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * mult;
}

/** MPRUN_COLL_REPRODUCIBLE: whether reductions across nodes fold in team-rank order at one rank (mprun forwards it to every node, configVariables). */
export function collReproducible(): boolean {
  const v = env('MPRUN_COLL_REPRODUCIBLE');
  if (v !== '0' && v !== '1') throw new RangeError(`MPRUN_COLL_REPRODUCIBLE must be 0 or 1, not '${v}'`);
  return v === '1';
}

function env(name: string): string {
  const v = process.env[name];
  if (v !== undefined && v !== '') return v;
  return CONFIG_FIELDS.find((f) => f.name === name)!.default;
}

/** A byte count the way the variables take it: 4G, 512M, 64K, or bytes. */
export function formatBytes(n: number): string {
  for (const [unit, size] of [['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) {
    if (n >= size) return n % size === 0 ? `${n / size}${unit}` : `${(n / size).toFixed(1)}${unit}`;
  }
  return String(n);
}

/**
 * Refuses, before any rank starts, sizes that cannot be mapped: each of a
 * rank's heap, its collective arena and the node's control segment is one
 * shared mapping, and Node.js makes an ArrayBuffer over at most
 * `limit` bytes of external memory (buffer.constants.MAX_LENGTH: 4 GiB in Node 20).
 */
export function checkMappings(c: Pick<RuntimeConfig, 'heapBytes' | 'queueBytes' | 'teamSlots' | 'collBankBytes'>, localSize: number, limit = maxMappingBytes): void {
  const most = `Node.js ${process.version} maps at most ${formatBytes(limit)} as one buffer (buffer.constants.MAX_LENGTH)`;
  if (c.heapBytes > limit) {
    throw new MprunError('ERR_MPRUN_ARG', `MPRUN_HEAP_SIZE=${formatBytes(c.heapBytes)} is too large: each rank's symmetric heap is one shared mapping, and ${most}; use at most MPRUN_HEAP_SIZE=${formatBytes(limit)}`);
  }
  const arena = c.teamSlots * 2 * c.collBankBytes;
  if (arena > limit) {
    throw new MprunError('ERR_MPRUN_ARG', `MPRUN_TEAM_SLOTS=${c.teamSlots} with MPRUN_COLL_BANK=${formatBytes(c.collBankBytes)} needs a collective arena of ${formatBytes(arena)} per rank (slots x 2 x bank), and ${most}`);
  }
  const total = controlLayout(localSize, c.queueBytes, c.teamSlots).total;
  if (total > limit) {
    let fits = c.queueBytes;
    while (fits > 4096 && controlLayout(localSize, fits, c.teamSlots).total > limit) fits /= 2;
    const hint = controlLayout(localSize, fits, c.teamSlots).total <= limit ? `; with ${localSize} ranks on a node, use at most MPRUN_QUEUE_SIZE=${formatBytes(fits)}` : '';
    throw new MprunError('ERR_MPRUN_ARG', `MPRUN_QUEUE_SIZE=${formatBytes(c.queueBytes)} is too large for ${localSize} ranks on a node: the node's control segment (the message queues) would be ${formatBytes(total)}, and ${most}${hint}`);
  }
}

export interface RuntimeConfig {
  heapBytes: number;
  queueBytes: number;
  eagerLimit: number;
  spinMicros: number;
  yieldWhileSpinning: boolean;
  blockSliceMs: number;
  hangReportMs: number;
  recvPollNs: number;
  /**
   * Nanoseconds the native receive polls the rank's queue when no other
   * transport can deliver the message meanwhile: MPRUN_RECV_POLL_NS, or when
   * auto the spin (MPRUN_SPIN_US; 0 when ranks outnumber cores). A receive whose
   * reply takes longer than 3 us (every reply while V8 still interprets the
   * peer's code) otherwise left the native path for the waits.
   */
  recvFastPollNs: number;
  collPollNs: number;
  /**
   * Nanoseconds the native fast paths of small collectives poll before they
   * leave the rest to the steps: MPRUN_COLL_POLL_US, or when auto the spin
   * (MPRUN_SPIN_US), yielding the core when ranks outnumber cores. Measured
   * with 8 ranks on 2 cores (README, "Cold and steady"): a barrier 17 us with
   * no poll, 6-10 us polling 5-100 us with yields; an 8-byte allreduce 30-34
   * against 14-16 us.
   */
  collFastPollNs: number;
  /** MPRUN_WARMUP: rounds of each small operation init() runs before it returns (runtime/warmup.ts). */
  warmupRounds: number;
  teamSlots: number;
  collBankBytes: number;
  collChunkBytes: number;
  debug: boolean;
}

export function readConfig(localSize: number): RuntimeConfig {
  const oversubscribed = localSize > cpus().length;
  const spin = env('MPRUN_SPIN_US');
  const spinMicros = spin === 'auto' ? (oversubscribed ? 20 : 200) : Number(spin);
  const queueBytes = parseBytes(env('MPRUN_QUEUE_SIZE'), 'MPRUN_QUEUE_SIZE');
  if (queueBytes < 4096 || (queueBytes & (queueBytes - 1)) !== 0) throw new RangeError('MPRUN_QUEUE_SIZE must be a power of two of at least 4K');
  const eagerLimit = parseBytes(env('MPRUN_EAGER_LIMIT'), 'MPRUN_EAGER_LIMIT');
  const blockSliceMs = Number(env('MPRUN_BLOCK_SLICE_MS'));
  if (!(blockSliceMs > 0)) throw new RangeError('MPRUN_BLOCK_SLICE_MS must be a positive number');
  if (!(Number(env('MPRUN_HANG_REPORT_MS')) > 0)) throw new RangeError('MPRUN_HANG_REPORT_MS must be a positive number of milliseconds');
  if (!Number.isInteger(Number(env('MPRUN_WARMUP'))) || Number(env('MPRUN_WARMUP')) < 0) throw new RangeError('MPRUN_WARMUP must be a whole number of rounds');
  const teamSlots = Number(env('MPRUN_TEAM_SLOTS'));
  if (!Number.isInteger(teamSlots) || teamSlots < 2 || teamSlots > 1024) throw new RangeError('MPRUN_TEAM_SLOTS must be an integer from 2 to 1024');
  const collBankBytes = parseBytes(env('MPRUN_COLL_BANK'), 'MPRUN_COLL_BANK');
  if (collBankBytes < 64 * 1024 || collBankBytes % 4096 !== 0) throw new RangeError('MPRUN_COLL_BANK must be a multiple of 4K, at least 64K');
  const config: RuntimeConfig = {
    teamSlots,
    collBankBytes,
    collChunkBytes: Math.max(4096, parseBytes(env('MPRUN_COLL_CHUNK'), 'MPRUN_COLL_CHUNK')),
    heapBytes: parseBytes(env('MPRUN_HEAP_SIZE'), 'MPRUN_HEAP_SIZE'),
    queueBytes,
    // A message must fit in a quarter ring, so that the ring never waits on one record.
    eagerLimit: Math.min(eagerLimit, queueBytes / 4 - 64),
    spinMicros,
    yieldWhileSpinning: oversubscribed,
    blockSliceMs,
    hangReportMs: Number(env('MPRUN_HANG_REPORT_MS')),
    recvPollNs: env('MPRUN_RECV_POLL_NS') === 'auto' ? (oversubscribed ? 0 : 3000) : Number(env('MPRUN_RECV_POLL_NS')),
    recvFastPollNs: env('MPRUN_RECV_POLL_NS') === 'auto' ? (oversubscribed ? 0 : spinMicros * 1000) : Number(env('MPRUN_RECV_POLL_NS')),
    collPollNs: env('MPRUN_COLL_POLL_US') === 'auto' ? (oversubscribed ? 0 : spinMicros * 1000) : Number(env('MPRUN_COLL_POLL_US')) * 1000,
    collFastPollNs: env('MPRUN_COLL_POLL_US') === 'auto' ? spinMicros * 1000 : Number(env('MPRUN_COLL_POLL_US')) * 1000,
    warmupRounds: Number(env('MPRUN_WARMUP')),
    debug: env('MPRUN_DEBUG') !== '0',
  };
  checkMappings(config, localSize);
  return config;
}
