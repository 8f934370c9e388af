/**
 * The node agent's data service (libdsm's arbiter): ranks on other nodes
 * connect here to reach this node's ranks. It attaches the node's symmetric
 * heaps, so remote puts, gets and atomics complete while the target rank
 * computes (rma.ts); it relays messages into the node queue to each rank as
 * the control segment's gateway participant (relay.ts); and it is the home
 * of its share of every shared variable's pages (page-homes.ts) and of the
 * semaphores whose names hash here (semaphores.ts).
 *
 * This file accepts connections and owns the parts; each connection proves
 * the job secret first and is served by a DataConnection (connection.ts). A
 * malformed frame closes that connection (logged), never the agent; a
 * request the agent cannot serve gets an ERROR reply.
 */
import { cpus } from 'node:os';
import { createServer, type Server, type Socket } from 'node:net';
import { AUTH_TIMEOUT_MS } from '../../core/wire.js';
import { WAKE_MESSAGE, type ControlSegment } from '../shm/control.js';
import { DoorWatch } from '../shm/door.js';
import { NodeQueues } from '../shm/queue.js';
import { AmoServer, serverSpinMicros } from './amo.js';
import { DataConnection, type DataServices } from './connection.js';
import { NodeHeaps } from './node-heaps.js';
import { PageHomes } from './page-homes.js';
import { MessageRelay } from './relay.js';
import { RemoteMemoryAccess } from './rma.js';
import { SemaphoreTable } from './semaphores.js';

export interface ServiceOptions {
  ctrl: ControlSegment;
  /** World rank of each local rank. */
  ranks: readonly number[];
  nodeIndex: number;
  nnodes: number;
  secret: string;
  log(message: string): void;
  /** How long a connection may take to show the secret (AUTH_TIMEOUT_MS; shorter in tests). */
  authTimeoutMs?: number;
}

/** The parts of the service, over this node's control segment and ranks. */
export function dataServices(o: ServiceOptions): DataServices {
  const heaps = new NodeHeaps(o.ctrl, o.ranks);
  return {
    secret: o.secret,
    nodeIndex: o.nodeIndex,
    heaps,
    rma: new RemoteMemoryAccess(heaps),
    relay: new MessageRelay(new NodeQueues(o.ctrl, o.ctrl.gateway), o.ranks.length, (pump) => new DoorWatch(o.ctrl, o.ctrl.gateway, WAKE_MESSAGE, pump)),
    homes: new PageHomes({ nodeIndex: o.nodeIndex, nnodes: o.nnodes }),
    semaphores: new SemaphoreTable(),
    amoPort: 0,
  };
}

export class DsmService {
  readonly #log: (message: string) => void;
  readonly #services: DataServices;
  readonly #options: ServiceOptions;
  readonly #sockets = new Set<Socket>();
  #server: Server | null = null;
  #atomics: AmoServer | null = null;

  constructor(o: ServiceOptions) {
    this.#log = o.log;
    this.#options = o;
    this.#services = dataServices(o);
  }

  get #authTimeoutMs(): number {
    return this.#options.authTimeoutMs ?? AUTH_TIMEOUT_MS;
  }

  /** The port of the native thread serving one-sided operations (0: none; atomics stay on the data connections). */
  get atomicsPort(): number {
    return this.#services.amoPort;
  }

  /** Listens on a TCP host (port chosen by the kernel) or a Unix socket path; returns the address for ranks. */
  listen(where: { host: string } | { path: string }): Promise<string> {
    const server = createServer((s) => this.#accept(s));
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const done = (): void => {
        const a = server.address();
        if (a === null || typeof a === 'string') resolve(typeof a === 'string' ? a : (where as { path: string }).path);
        else {
          this.#serveAtomics(a.address);
          resolve(a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
        }
      };
      if ('path' in where) server.listen(where.path, done);
      else server.listen(0, where.host, done);
    });
  }

  close(): void {
    const s = this.#services;
    // First: its thread reads the control segment, which the agent unmaps after this.
    s.relay.close();
    // Before the variables' segments are detached (homes.close).
    this.#atomics?.stop();
    this.#server?.close();
    for (const socket of this.#sockets) socket.destroy();
    s.heaps.close();
    s.homes.close();
  }

  /**
   * Atomics (on shared variables and on ranks' heaps) on a native thread beside
   * the service, on the same address (amo.ts), when other nodes can ask for
   * them. Without it they are served on the connections, as every other request.
   */
  #serveAtomics(host: string): void {
    const o = this.#options;
    if (o.nnodes < 2) return;
    try {
      this.#atomics = AmoServer.start(host, o.secret, o.nodeIndex, o.nnodes, serverSpinMicros(o.ranks.length, cpus().length), this.#authTimeoutMs);
    } catch (e) {
      this.#log(`atomics stay on the data connections: ${(e as Error).message}`);
      return;
    }
    this.#services.amoPort = this.#atomics.port;
    this.#services.homes.serveAtomics(this.#atomics);
    this.#services.heaps.serveAtomics(this.#atomics);
  }

  #accept(socket: Socket): void {
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    const close = (reason: string): void => {
      const peer = connection.peer;
      this.#log(`closed a data connection from ${socket.remoteAddress ?? 'a local socket'}${peer >= 0 ? ` (rank ${peer})` : ''}: ${reason}`);
      socket.destroy();
    };
    const connection: DataConnection = new DataConnection(this.#services, {
      write(...chunks) {
        if (socket.destroyed) return;
        if (chunks.length === 1) {
          socket.write(chunks[0]!);
          return;
        }
        socket.cork();
        for (const c of chunks) socket.write(c);
        socket.uncork();
      },
      close,
    });
    socket.on('data', (chunk: Buffer) => connection.push(chunk));
    socket.on('error', () => socket.destroy());
    // One that never shows the secret holds a descriptor and its buffer for ever otherwise (core/wire.ts's rule).
    const timeout = this.#authTimeoutMs;
    const deadline = setTimeout(() => {
      if (connection.peer < 0) close(`no AUTH within ${timeout / 1000} s`);
    }, timeout).unref();
    socket.on('close', () => {
      clearTimeout(deadline);
      connection.lost();
      this.#sockets.delete(socket);
    });
  }
}
