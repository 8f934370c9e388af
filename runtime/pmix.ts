/**
 * The PMIx client a rank bootstraps from when a PMIx server started it
 * (`srun --mpi=pmix`, Open MPI's `mpirun`): its rank, the job's size, its local
 * rank and node, and the peers' business cards through put/commit and a
 * collecting fence, or on demand (direct modex).
 *
 *   if (PmixClient.available().ok) {
 *     const pmix = PmixClient.connect();
 *     pmix.putCard({ host, port });  pmix.commit();       // early: peers may ask for it now
 *     await pmix.fence({ collect: true });                 // or skip it and let getCard fetch
 *     const card = await pmix.getCard(peer);
 *   }
 *
 * libpmix.so.2 (Debian's libpmix2, PMIx v3.2 to v5) is loaded at the first call,
 * or the file named by $MPRUN_PMIX_LIB. The calls are in native/pmix.cc; what is
 * required of the server and what is retried is decided here.
 *
 * Topology comes from this rank's PMIX_HOSTNAME and the job's PMIX_LOCAL_PEERS,
 * never from peers' PMIX_NODEID: Slurm 22.05 reports the local node's id for
 * every rank (research/ucx_pmix.md, fixed in Slurm 25.05).
 */
import { hostname } from 'node:os';
import { packValue, unpackValue } from '../core/codec.js';
import { MprunError, isMprunError } from '../core/errors.js';
import { nativeError, nativePmix, PmixScope, type NativePmix, type PmixJobInfo } from '../native/index.js';

/** The key of a rank's business card. */
export const CARD_KEY = 'mprun.card';

/**
 * Slurm 22.05's pmix plugin has a 10 s direct-modex timeout (pmixp_dmdx.c); measured here
 * (22.05.8) a fetch waited 25 s for a late commit without it firing. getCard asks again
 * on a timeout, until its own deadline, in case a server gives up earlier.
 */
const DEFAULT_CARD_TIMEOUT_MS = 300_000;

export type PmixScopeName = keyof typeof PmixScope;

export interface PmixAvailability {
  ok: boolean;
  /** Why not; with ok, the library and its version. */
  reason: string;
}

export interface PmixFenceOptions {
  /** Collect every rank's committed values and hand them to all (PMIX_COLLECT_DATA); a later getCard is then local. */
  collect?: boolean;
  /** Seconds before the server gives up (PMIX_TIMEOUT); 0 or absent: the server's default. */
  timeout?: number;
}

export interface PmixCardOptions {
  /** How long to wait for a peer that has not committed its card yet, in ms (default 300 s). */
  timeoutMs?: number;
}

export class PmixClient {
  /** The job's namespace (PMIx's name of the job). */
  readonly nspace: string;
  readonly rank: number;
  readonly size: number;
  /** Rank among this job's ranks on this node. */
  readonly localRank: number;
  readonly localSize: number;
  /** This node's ranks, ascending (PMIX_LOCAL_PEERS), including this one. */
  readonly localPeers: readonly number[];
  /** This node's name: PMIX_HOSTNAME, else the host name. */
  readonly nodeName: string;
  /** The application number (MPMD), 0 for most jobs. */
  readonly appnum: number;
  /** The library and its version string. */
  readonly library: { path: string; version: string };
  /** Everything the server said about the job and this rank, as read. */
  readonly info: Readonly<PmixJobInfo>;
  readonly #pmix: NativePmix;
  #onExit: (() => void) | null;

  private constructor(pmix: NativePmix, nspace: string, rank: number, info: PmixJobInfo, library: { path: string; version: string }) {
    this.#pmix = pmix;
    this.nspace = nspace;
    this.rank = rank;
    this.info = Object.freeze({ ...info });
    this.library = library;
    if (info.size === null || info.size < 1) throw protocol(`the PMIx server gave no PMIX_JOB_SIZE for namespace ${nspace}`);
    this.size = info.size;
    if (rank >= this.size) throw protocol(`PMIx_Init gave rank ${rank}, but the job has ${this.size} ranks`);
    const peers = info.localPeers !== null ? parseRanks(info.localPeers) : null;
    if (peers !== null && (!peers.includes(rank) || peers.some((p) => p >= this.size))) {
      throw protocol(`PMIX_LOCAL_PEERS "${info.localPeers}" does not fit rank ${rank} of ${this.size}`);
    }
    const localRank = info.localRank ?? peers?.indexOf(rank) ?? null;
    if (localRank === null) throw protocol('the PMIx server gave neither PMIX_LOCAL_RANK nor PMIX_LOCAL_PEERS');
    this.localRank = localRank;
    this.localSize = info.localSize ?? peers?.length ?? 1;
    this.localPeers = Object.freeze(peers ?? [rank]);
    if (this.localRank >= this.localSize) throw protocol(`PMIX_LOCAL_RANK ${this.localRank} is not below PMIX_LOCAL_SIZE ${this.localSize}`);
    this.nodeName = info.hostname ?? hostname();
    this.appnum = info.appnum ?? 0;
    // A process that initialized PMIx and exits without finalizing is an abnormal end to mpirun.
    this.#onExit = () => this.finalize();
    process.once('exit', this.#onExit);
  }

  /**
   * Whether this process can bootstrap from PMIx: started by a PMIx server
   * (PMIX_NAMESPACE set), the addon built, the library found and of a
   * supported version. Never throws, and never initializes PMIx.
   */
  static available(): PmixAvailability {
    try {
      const ns = process.env.PMIX_NAMESPACE;
      if (ns === undefined || ns === '') return { ok: false, reason: 'not started by a PMIx server (PMIX_NAMESPACE is not set)' };
      if (nativeError !== null) return { ok: false, reason: nativeError };
      const p = nativePmix().probe();
      if (!p.loaded) return { ok: false, reason: p.reason ?? `cannot load ${p.path}` };
      return { ok: true, reason: `${p.path}: ${p.version ?? 'unknown version'}` };
    } catch (e) {
      return { ok: false, reason: e instanceof Error ? e.message : String(e) };
    }
  }

  /**
   * PMIx_Init and the job-level keys. Blocks until the local PMIx server answers
   * (a local socket: milliseconds). Throws MprunError ERR_MPRUN_UNSUPPORTED when
   * not started by a PMIx server or without a usable library.
   */
  static connect(): PmixClient {
    const ns = process.env.PMIX_NAMESPACE;
    if (ns === undefined || ns === '') {
      throw new MprunError('ERR_MPRUN_UNSUPPORTED', 'not started by a PMIx server (PMIX_NAMESPACE is not set): launch with `srun --mpi=pmix` or Open MPI\'s `mpirun`');
    }
    if (nativeError !== null) throw new MprunError('ERR_MPRUN_NATIVE', nativeError);
    const pmix = nativePmix();
    const probe = pmix.probe();
    if (!probe.loaded) throw new MprunError('ERR_MPRUN_UNSUPPORTED', probe.reason ?? `cannot load ${probe.path}`);
    const { nspace, rank } = pmix.init();
    let info: PmixJobInfo;
    try {
      info = pmix.jobInfo();
    } catch (e) {
      pmix.finalize();
      throw e;
    }
    try {
      return new PmixClient(pmix, nspace, rank, info, { path: probe.path, version: probe.version ?? '' });
    } catch (e) {
      pmix.finalize();
      throw e;
    }
  }

  /** Puts this rank's business card (any msgpack value); visible to peers after commit(). */
  putCard(value: unknown, scope: PmixScopeName = 'global'): void {
    this.put(CARD_KEY, packValue(value), scope);
  }

  /** PMIx_Put of raw bytes or a string under `key`. */
  put(key: string, value: Uint8Array | string, scope: PmixScopeName = 'global'): void {
    const code = PmixScope[scope];
    if (code === undefined) throw new RangeError(`PMIx scope is 'local', 'remote' or 'global', not ${String(scope)}`);
    this.#pmix.put(code, key, value);
  }

  /** PMIx_Commit: the values put so far become available to peers (their get, or the next fence). */
  commit(): void {
    this.#pmix.commit();
  }

  /**
   * PMIx_Fence over every rank of the job. With `collect`, the committed values
   * travel with it and getCard is then answered locally. Resolves when every
   * rank has entered; the JS thread stays free meanwhile (a pool thread blocks).
   */
  async fence(options: PmixFenceOptions = {}): Promise<void> {
    await this.#pmix.fenceAsync(options.collect === true, checkTimeout(options.timeout));
  }

  /** The same fence, blocking this thread (for bootstrap code that cannot await). */
  fenceSync(options: PmixFenceOptions = {}): void {
    this.#pmix.fence(options.collect === true, checkTimeout(options.timeout));
  }

  /**
   * Rank `rank`'s business card. After a collecting fence it is read locally;
   * otherwise the server fetches it from the peer's server (direct modex) and
   * waits until the peer has committed it; a server that gives up (timeout) or
   * answers "not found" (the peer has not committed yet) is asked again until
   * `timeoutMs`. Put and commit your card before asking for others'.
   */
  async getCard(rank: number, options: PmixCardOptions = {}): Promise<unknown> {
    this.#checkRank(rank);
    const limit = options.timeoutMs ?? DEFAULT_CARD_TIMEOUT_MS;
    const deadline = Date.now() + limit;
    let pause = 5;
    let last = 'not found';
    for (;;) {
      const left = Math.ceil((deadline - Date.now()) / 1000);
      try {
        const v = await this.#pmix.getAsync(rank, CARD_KEY, { timeout: Math.max(1, left) });
        if (v !== null) {
          if (!(v instanceof Uint8Array)) throw new MprunError('ERR_MPRUN_PROTOCOL', `rank ${rank}'s business card is not bytes but ${typeof v}`, { rank });
          return unpackValue(v);
        }
        // Open MPI 4.1's server (PMIx 4.2) answers NOT_FOUND, instead of waiting, when asked
        // before the peer has committed (seen under load): ask again after a pause.
        last = 'not found';
      } catch (e) {
        if (!isMprunError(e, 'ERR_MPRUN_TIMEOUT')) throw e;
        last = e.message;
      }
      if (Date.now() >= deadline) {
        throw new MprunError('ERR_MPRUN_TIMEOUT', `rank ${rank} did not commit its business card (${CARD_KEY}) within ${limit} ms (PMIx: ${last})`, { rank });
      }
      await new Promise((r) => setTimeout(r, Math.min(pause, Math.max(0, deadline - Date.now()))));
      pause = Math.min(pause * 2, 200);
    }
  }

  /**
   * getCard, blocking this thread (for synchronous collectives that meet a
   * peer for the first time). Ask only for cards committed before a fence
   * every rank has passed: they are served at once.
   */
  getCardSync(rank: number, options: PmixCardOptions = {}): unknown {
    this.#checkRank(rank);
    const limit = options.timeoutMs ?? DEFAULT_CARD_TIMEOUT_MS;
    const deadline = Date.now() + limit;
    const nap = new Int32Array(new SharedArrayBuffer(4));
    for (let pause = 5; ; pause = Math.min(pause * 2, 200)) {
      const v = this.#pmix.get(rank, CARD_KEY, { timeout: Math.max(1, Math.ceil((deadline - Date.now()) / 1000)) });
      if (v instanceof Uint8Array) return unpackValue(v);
      if (v !== null) throw new MprunError('ERR_MPRUN_PROTOCOL', `rank ${rank}'s business card is not bytes but ${typeof v}`, { rank });
      if (Date.now() >= deadline) throw new MprunError('ERR_MPRUN_TIMEOUT', `rank ${rank} did not commit its business card (${CARD_KEY}) within ${limit} ms`, { rank });
      Atomics.wait(nap, 0, 0, pause);
    }
  }

  /** A card already here (after a collecting fence), without asking any server; null when absent. */
  cardIfPresent(rank: number): unknown {
    this.#checkRank(rank);
    const v = this.#pmix.get(rank, CARD_KEY, { optional: true });
    return v instanceof Uint8Array ? unpackValue(v) : null;
  }

  /** Rank `rank`'s PMIX_HOSTNAME as the server holds it (no fetch from peers); null when it holds none. */
  peerHostname(rank: number): string | null {
    this.#checkRank(rank);
    if (rank === this.rank) return this.nodeName;
    const v = this.#pmix.get(rank, 'pmix.hname', { optional: true });
    return typeof v === 'string' ? v : null;
  }

  /**
   * PMIx_Abort: the server ends every rank of the job (Slurm SIGKILLs the step;
   * mpirun kills the job and reports `message`); this process then exits with `code`.
   */
  abort(code: number, message: string): never {
    try {
      if (this.#pmix.state() === 'initialized') this.#pmix.abort(code, message);
    } finally {
      process.exit(code === 0 ? 1 : code);
    }
  }

  /** PMIx_Finalize (no barrier). Also done at process exit; a second call does nothing. */
  finalize(): void {
    if (this.#onExit !== null) {
      process.removeListener('exit', this.#onExit);
      this.#onExit = null;
    }
    this.#pmix.finalize();
  }

  #checkRank(rank: number): void {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.size) throw new RangeError(`rank ${rank} is not in 0..${this.size - 1}`);
  }
}

/** "0,1,2" or with ranges "0-3,8": ascending, without repeats. */
export function parseRanks(list: string): number[] {
  const out = new Set<number>();
  for (const part of list.split(',')) {
    const t = part.trim();
    if (t === '') continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(t);
    if (m === null) throw protocol(`cannot read the rank list "${list}"`);
    const a = Number(m[1]);
    const b = m[2] !== undefined ? Number(m[2]) : a;
    for (let r = a; r <= b; r++) out.add(r);
  }
  return [...out].sort((x, y) => x - y);
}

function checkTimeout(t: number | undefined): number {
  if (t === undefined) return 0;
  if (!Number.isFinite(t) || t < 0) throw new RangeError(`a PMIx timeout is a number of seconds >= 0, not ${t}`);
  return Math.ceil(t);
}

function protocol(message: string): MprunError {
  return new MprunError('ERR_MPRUN_PROTOCOL', message);
}
