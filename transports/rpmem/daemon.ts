/**
 * The rpmem target daemon (rpmemd's role): serves pools under its pool set
 * directory to clients that reach it over ssh (control on stdin/stdout) or, when
 * mprun started it for a job, over TCP sessions that prove the job's secret.
 * Data lanes are TCP connections that prove the same secret first; once a
 * lane names its pool, a native thread serves it (native/lane.cc). This file
 * serves connections; the pools are registry.ts's.
 *
 * Durability rules: a persist is acknowledged only after pmem_persist /
 * pmem_msync returned success (PMDK's rpmemd ignores the result of its
 * persist, rpmemd_fip.c, so a failed msync was still acknowledged); a failure
 * poisons the pool, and every later request on it reports that error, never a
 * retry that could "succeed" after the kernel dropped the dirty pages (the
 * PostgreSQL "fsyncgate" lesson: PANIC on fsync failure). Space is allocated
 * when a pool is created. A malformed or unauthenticated frame closes that
 * connection, logged; the daemon keeps serving.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { FrameParser, HEADER_BYTES, MAX_AUTH_PAYLOAD, ProtocolError, type Header } from '../../core/frames.js';
import { AUTH_TIMEOUT_MS } from '../../core/wire.js';
import type { DaemonLog } from './header-store.js';
import type { OpenPool } from './open-pool.js';
import { errnoNumber, RpmemFrame, RPMEM_PROTOCOL } from './protocol.js';
import { errnoOf } from './refusal.js';
import { PoolRegistry } from './registry.js';

export interface DaemonOptions extends DaemonLog {
  poolsetDir: string;
  /** Address the lanes listen on. */
  listen: string;
  /** Failures and closed connections: always logged. */
  log: (message: string) => void;
  /** Pools created and removed, requests refused as the API expects (ENOENT, EEXIST, EBUSY): with log-level info. */
  info?: (message: string) => void;
}

/** A connection's role, once it has proved the secret. */
type Role = { kind: 'new' } | { kind: 'control' } | { kind: 'lane'; pool: OpenPool; lane: number; fd: number };

export class RpmemDaemon {
  readonly #opts: DaemonOptions;
  /** The pools, open and on disk. */
  readonly pools: PoolRegistry;
  #secret: Buffer | null = null;
  #server: Server | null = null;
  readonly #sockets = new Set<Socket>();
  /** Sockets a lane thread owns: stop() leaves them to it. */
  readonly #laneSockets = new Set<Socket>();

  constructor(opts: DaemonOptions) {
    this.#opts = opts;
    this.pools = new PoolRegistry(opts);
  }

  /** Sets the secret and starts the lane listener; returns where it listens. */
  async start(secret: Buffer): Promise<{ address: string; port: number }> {
    this.#secret = secret;
    const server = createServer((s) => this.#accept(s));
    this.#server = server;
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen({ host: this.#opts.listen, port: 0 }, () => ok());
    });
    const a = server.address();
    if (a === null || typeof a === 'string') throw new Error('the lane listener has no TCP address');
    return { address: this.#opts.listen, port: a.port };
  }

  stop(): void {
    this.#server?.close();
    // Pools first: their lane threads are woken (shutdown) and close their sockets when done.
    this.pools.closeAll();
    for (const s of this.#sockets) if (!this.#laneSockets.has(s)) s.destroy();
  }

  /** Serves one control channel (stdin/stdout, or an authenticated TCP session). */
  control(owner: object, reply: (frame: Buffer) => void, h: Header, payload: Uint8Array): void {
    const ok = (body?: unknown): void => reply(RPMEM_PROTOCOL.frame(RpmemFrame.REPLY, { id: h.id }, body === undefined ? undefined : Buffer.from(JSON.stringify(body))));
    const fail = (e: unknown): void => {
      const errno = errnoOf(e);
      // The client adds the errno name (rpmemError): not twice.
      const message = (e as Error).message.replace(new RegExp(` \\(${errno}\\)$`), '');
      const expected = errno === 'ENOENT' || errno === 'EEXIST' || errno === 'EBUSY';
      (expected ? this.#opts.info : this.#opts.log)?.(`${RPMEM_PROTOCOL.typeName(h.type)} refused: ${message}`);
      reply(status(h.id, errno, Buffer.from(JSON.stringify({ errno, message })), 'EREMOTEIO'));
    };
    try {
      const body = payload.byteLength > 0 && h.type !== RpmemFrame.AUTH ? (JSON.parse(Buffer.from(payload).toString('utf8')) as Record<string, unknown>) : {};
      if (typeof body !== 'object' || body === null) throw new ProtocolError('control body is not an object');
      switch (h.type) {
        case RpmemFrame.CREATE:
          return ok(this.pools.create(body, owner));
        case RpmemFrame.OPEN:
          return ok(this.pools.open(body, owner));
        case RpmemFrame.CLOSE:
          this.pools.closePool(h.target, owner);
          return ok();
        case RpmemFrame.SET_ATTR:
          this.pools.setAttr(h.target, body, owner);
          return ok();
        case RpmemFrame.REMOVE:
          this.pools.remove(body);
          return ok();
        case RpmemFrame.LIST:
          return ok({ sets: this.pools.list(body.dir) });
        default:
          throw new ProtocolError(`${RPMEM_PROTOCOL.typeName(h.type)} is not a control request`);
      }
    } catch (e) {
      if (e instanceof ProtocolError || e instanceof SyntaxError) throw new ProtocolError(e.message);
      fail(e);
    }
  }

  #checkSecret(payload: Uint8Array): boolean {
    const s = this.#secret;
    return s !== null && payload.byteLength === s.byteLength && timingSafeEqual(payload, s);
  }

  #accept(s: Socket): void {
    this.#sockets.add(s);
    s.setNoDelay(true);
    const peer = `${s.remoteAddress}:${s.remotePort}`;
    let role: Role | null = null; // null: not authenticated yet
    const owner = {};
    const send = (b: Buffer): void => {
      if (!s.destroyed) s.write(b);
    };
    const close = (why: string): void => {
      this.#opts.log(`closed a connection from ${peer}: ${why}`);
      s.destroy();
    };
    const parser = new FrameParser(
      {
        begin: (h) => {
          if (role === null && h.type !== RpmemFrame.AUTH) throw new ProtocolError(`${RPMEM_PROTOCOL.typeName(h.type)} before AUTH`);
          // Nothing bigger than a secret is buffered for a peer that has not shown one.
          if (role === null && h.bytes - HEADER_BYTES > MAX_AUTH_PAYLOAD) throw new ProtocolError(`AUTH of ${h.bytes - HEADER_BYTES} bytes (at most ${MAX_AUTH_PAYLOAD})`);
          return null;
        },
        end: (h, payload) => {
          if (role === null) {
            if (!this.#checkSecret(payload)) throw new ProtocolError('wrong secret');
            role = { kind: 'new' };
            send(status(h.id, null));
            return;
          }
          if (h.type === RpmemFrame.LANE) {
            if (role.kind !== 'new') throw new ProtocolError('LANE on a connection that already has a role');
            const pool = this.pools.get(h.target);
            if (pool === undefined) throw new ProtocolError(`LANE for pool ${h.target}, which is not open`);
            if (h.arg < 0 || h.arg >= pool.nlanes) throw new ProtocolError(`lane ${h.arg} of a pool with ${pool.nlanes} lanes`);
            // From here the lane's thread owns the socket: Node stops reading it.
            const handle = (s as unknown as { _handle?: { fd?: number; readStop?: () => number } })._handle;
            if (handle?.fd === undefined || handle.fd < 0 || handle.readStop === undefined) throw new ProtocolError('internal: the lane socket has no descriptor');
            s.pause();
            handle.readStop();
            role = { kind: 'lane', pool, lane: h.arg, fd: handle.fd };
            this.#laneSockets.add(s);
            send(status(h.id, null));
            parser.stop(); // what follows LANE in this chunk goes to the lane's thread
            return;
          }
          if (role.kind === 'lane') throw new ProtocolError(`${RPMEM_PROTOCOL.typeName(h.type)} after the lane started`);
          if (role.kind === 'new') role = { kind: 'control' };
          this.control(owner, send, h, payload);
        },
      },
      RPMEM_PROTOCOL,
    );
    let laneStarted = false;
    const authTimer = setTimeout(() => role === null && close(`no AUTH within ${AUTH_TIMEOUT_MS / 1000} s`), AUTH_TIMEOUT_MS);
    s.on('data', (d: Buffer) => {
      try {
        const rest = parser.push(d);
        if (role?.kind === 'lane' && !laneStarted) {
          laneStarted = true;
          const r = role;
          r.pool.serveLane(r.fd, r.lane, rest, this.#opts.log, (why) => this.#opts.log(`closed a connection from ${peer}: ${why}`), () => s.destroy());
        }
      } catch (e) {
        close((e as Error).message);
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(authTimer);
      this.#sockets.delete(s);
      this.#laneSockets.delete(s);
      if (role?.kind === 'control') this.pools.closeOwned(owner);
    });
  }
}

/** A REPLY: status 0, or the errno of `errno` (`fallback`'s when unknown here), with an optional body. */
function status(id: number, errno: string | null, body?: Uint8Array, fallback = 'EIO'): Buffer {
  return RPMEM_PROTOCOL.frame(RpmemFrame.REPLY, { id, arg: errno === null ? 0 : errnoNumber(errno, fallback) }, body);
}
