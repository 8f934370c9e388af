/**
 * One-sided operations without the event loop (native/amo-server.cc says why
 * and what goes on the wire): the node agent serves shared-variable atomics,
 * and atomics, gets and puts on its ranks' heaps, on a native thread
 * (AmoServer); a rank asks with blocking requests on its own connection to each
 * node (AmoChannel). The agent's port travels in its AUTH_OK (header `arg`), so
 * a rank learns it with the link it already makes; 0 there (a Unix-socket
 * agent, a one-node job, or a server that could not start) leaves everything
 * on the link, as before.
 *
 * Ordering: a rank's writes to a variable reach a home through its link, and
 * release() returns only once the homes acknowledged them; an atomic asked
 * after that is served after them. Per heap, which path serves a rank's puts,
 * gets and atomics is AgentLink's choice (client.ts #nativeFor): one path at a
 * time, so they keep their order. Operations issued together without awaiting
 * are concurrent, as two ranks' are.
 */
import { eventLoopTurn } from '../../core/turns.js';
import { MprunError } from '../../core/errors.js';
import { AUTH_TIMEOUT_MS } from '../../core/wire.js';
import { native } from '../../native/index.js';
import type { VarMemory } from './layout.js';

/** A request's id for world rank `rank`'s heap (native/amo.h kHeapTarget), not a variable's. */
export function heapTarget(rank: number): number {
  return (0x80000000 | rank) >>> 0;
}

/** native/amo-server.cc's reply statuses, in words (index = status). */
const REFUSALS = ['', 'no such shared variable on this node', 'the range is outside the variable or heap, or misaligned', "the element's page is not homed on this node", 'bad operation or element type', "that heap is not served on the agent's native thread"];

/** How long a wait for a reply blocks the thread; a longer one goes on in such slices with the event loop between. */
const SLICE_MS = 10;
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * How long a rank's wait for a reply polls before it sleeps in recv() (amo.h
 * WaitEvents says why): the rank's spin budget (MPRUN_SPIN_US), set when its
 * peers are opened (registry.ts openPeers); 0 until then.
 */
let rankSpinMicros = 0;
export function setAmoSpin(micros: number): void {
  rankSpinMicros = micros;
}

/**
 * How long the agent's serving thread polls after each event before it
 * sleeps: 50 us, or MPRUN_SPIN_US when set; none unless the node has a core
 * its ranks leave free (else a polling thread takes a core a rank needs).
 */
export function serverSpinMicros(localRanks: number, cores: number, env: string | undefined = process.env.MPRUN_SPIN_US): number {
  if (env !== undefined && env !== 'auto' && Number.isFinite(Number(env))) return Math.max(0, Number(env));
  return localRanks >= cores ? 0 : 50;
}

/** Whether ranks use the native path ($MPRUN_DSM_NATIVE_AMO=0: atomics on the link, for comparison); read once, not per operation. */
let wanted: boolean | null = null;
export function nativeAtomicsWanted(): boolean {
  wanted ??= process.env.MPRUN_DSM_NATIVE_AMO !== '0';
  return wanted;
}

/** The agent's serving thread, listening beside its data service. */
export class AmoServer {
  readonly port: number;
  readonly #handle: number;
  #stopped = false;

  private constructor(handle: number, port: number) {
    this.#handle = handle;
    this.port = port;
  }

  /**
   * Listens on `host` (a numeric address), polling for `spinMicros` after each event, closing a connection that has
   * not shown the secret within `authTimeoutMs`; throws MprunError when it cannot.
   */
  static start(host: string, secret: string, nodeIndex: number, nnodes: number, spinMicros: number, authTimeoutMs = AUTH_TIMEOUT_MS): AmoServer {
    const { handle, port } = native().amo.serve(host, secret, nodeIndex, nnodes, spinMicros, authTimeoutMs);
    return new AmoServer(handle, port);
  }

  /** Serves variable `id` from `memory` (the node's segment, mapped until unregister). */
  register(id: number, memory: VarMemory, bytes: number): void {
    if (this.#stopped) return;
    const l = memory.layout;
    native().amo.register(this.#handle, id, memory.buffer, l.versions, l.data, l.pages, bytes);
  }

  /** Serves atomics on world rank `rank`'s heap, ringing its doorbell (ControlSegment.ring's words) for `wake` after each. */
  registerHeap(rank: number, heap: ArrayBuffer, ctrlWords: Int32Array, sleepingIndex: number, doorIndex: number, wake: number): void {
    if (!this.#stopped) native().amo.registerHeap(this.#handle, rank, heap, ctrlWords, sleepingIndex, doorIndex, wake);
  }

  unregister(id: number): void {
    if (!this.#stopped) native().amo.unregister(this.#handle, id);
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    native().amo.stop(this.#handle);
  }
}

function notServed(): Promise<never> {
  return Promise.reject(new MprunError('ERR_MPRUN_PROTOCOL', 'the agent does not serve that heap on its native thread'));
}

/** What a request's reply gives: the old value (a get: true), null not yet, undefined not served. */
type Reply = number | bigint | true | null | undefined;

/** A rank's connection to one node agent's serving thread: atomics, and gets of heaps. */
export class AmoChannel {
  readonly #fd: number;
  readonly #where: string;
  /** The request still waiting for its reply after its first wait (later ones queue behind it). */
  #inFlight: Promise<unknown> | null = null;
  #error: MprunError | null = null;

  private constructor(fd: number, where: string) {
    this.#fd = fd;
    this.#where = where;
  }

  /** Connects to node `nodeName`'s server at host:port and sends the job secret. */
  static open(host: string, port: number, secret: string, nodeName: string): AmoChannel {
    const where = `the agent of node ${nodeName} (${host}:${port}, atomics)`;
    try {
      return new AmoChannel(native().amo.connect(host, port, secret, CONNECT_TIMEOUT_MS, SLICE_MS, rankSpinMicros), where);
    } catch (e) {
      throw new MprunError('ERR_MPRUN_UNREACHABLE', `cannot connect to ${where}: ${(e as Error).message}`);
    }
  }

  /**
   * The atomic `op` on element type `dtype` at `byteOffset` of variable `id`
   * at its home (or of a heap: heapTarget()); resolves with the old value.
   * `elsewhere` asks for it another way when the server does not serve that heap.
   */
  atomic(id: number, byteOffset: number, op: number, dtype: number, a: number | bigint, b: number | bigint, elsewhere: () => Promise<number | bigint> = notServed): Promise<number | bigint> {
    return this.#ask(() => native().amo.request(this.#fd, id, byteOffset, op, dtype, a, b), elsewhere) as Promise<number | bigint>;
  }

  /** A heap's bytes [byteOffset, byteOffset + dst.byteLength) into `dst` (heapTarget()); `elsewhere` as atomic(). */
  get(id: number, byteOffset: number, dst: Uint8Array, elsewhere: () => Promise<void> = notServed): Promise<void> {
    return this.#ask(() => native().amo.get(this.#fd, id, byteOffset, dst), elsewhere).then(() => undefined);
  }

  /** A put of `src` into a heap (heapTarget()): written now, applied in order with everything on this connection. */
  put(id: number, byteOffset: number, src: Uint8Array): void {
    if (this.#error !== null) throw this.#error;
    try {
      native().amo.put(this.#fd, id, byteOffset, src);
    } catch (e) {
      throw this.#failed(e);
    }
  }

  /** Every put on this connection applied (waited for in the call: the thread answers at once); throws a refused put's reason. */
  flush(): void {
    if (this.#error !== null) throw this.#error;
    let status: number;
    try {
      status = native().amo.flush(this.#fd);
    } catch (e) {
      throw this.#failed(e);
    }
    if (status !== 0) throw this.#failed(Object.assign(new Error('refused'), { status }));
  }

  close(): void {
    if (this.#error === null) this.#error = new MprunError('ERR_MPRUN_UNREACHABLE', `the connection to ${this.#where} is closed`);
    native().amo.close(this.#fd);
  }

  /** Sends a request (`send`: it, then the first wait) and waits on for its reply; one at a time. */
  #ask(send: () => Reply, elsewhere: () => Promise<unknown>): Promise<unknown> {
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.#inFlight !== null) {
      const after = (): Promise<unknown> => this.#ask(send, elsewhere);
      return this.#inFlight.then(after, after);
    }
    let got: Reply;
    try {
      got = send();
    } catch (e) {
      return Promise.reject(this.#failed(e));
    }
    if (got === undefined) return elsewhere();
    if (got !== null) return Promise.resolve(got);
    const rest = this.#rest(elsewhere);
    this.#inFlight = rest;
    return rest;
  }

  /** Waits on for the reply in slices, letting the event loop run between them (an abort ends the rank meanwhile). */
  async #rest(elsewhere: () => Promise<unknown>): Promise<unknown> {
    try {
      for (;;) {
        await eventLoopTurn();
        let got: Reply;
        try {
          got = native().amo.reply(this.#fd);
        } catch (e) {
          throw this.#failed(e);
        }
        if (got === undefined) return await elsewhere();
        if (got !== null) return got;
      }
    } finally {
      this.#inFlight = null;
    }
  }

  /** A refusal fails this request; anything else (the connection lost) this channel too. */
  #failed(e: unknown): MprunError {
    const status = (e as { status?: unknown }).status;
    if (typeof status === 'number') return new MprunError('ERR_MPRUN_PROTOCOL', `${this.#where}: ${REFUSALS[status] ?? `refused (status ${status})`}`);
    this.#error = new MprunError('ERR_MPRUN_UNREACHABLE', `lost ${this.#where}: ${(e as Error).message}`);
    return this.#error;
  }
}
