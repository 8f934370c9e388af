/**
 * The job controller's wire-up service (PMI-like): each rank authenticates and
 * puts its business card; the controller holds each card once (O(p) memory)
 * and hands out only the cards a rank asks for ('cards': the node's ranks at
 * init, a peer on its first use; answered once every asked card is put, as
 * PMIx's direct modex), so a rank receives O(local + used) cards and no
 * process handles O(p^2) bytes (issue 12.4). The all-cards fence is kept for
 * clients of the first protocol. Ranks also report finalize and abort here,
 * and where they wait when a wait lasts (hang reports). It listens on a Unix
 * socket in the job's private (0700) directory, or on TCP across nodes.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { encodeFrame, serveConnection, type Frame } from '../core/wire.js';
import { parseWaits, type RankWait } from './hangs.js';

export interface ControllerEvents {
  /** A rank asked the job to abort (world.abort). */
  abort(rank: number, code: number, message: string): void;
  /** A rank called finalize. */
  finalized(rank: number): void;
  /** A connection broke the protocol; it has been closed. */
  rejected(why: string): void;
  /** A rank authenticated. */
  connected(rank: number): void;
  /** A rank tells what it has waited in for long (an empty list: nothing any more). */
  waits?(rank: number, waits: RankWait[]): void;
  /** The agent of node `node` authenticated; `send` talks to it. */
  agentConnected?(node: number, send: (f: Frame) => void): void;
  /** A frame from the agent of node `node`. */
  agentFrame?(node: number, f: Frame): void;
  /** The connection of the agent of node `node` closed. */
  agentClosed?(node: number): void;
}

/** What the card service sent one rank: requests answered, cards and bytes (the reply frames). */
export interface CardTraffic {
  requests: number;
  cards: number;
  bytes: number;
}

/** A 'cards' request waiting for cards not put yet. */
interface CardRequest {
  rank: number;
  id: number;
  ranks: number[];
  missing: number;
}

/** The largest request: a rank asks for its node's ranks or a batch of peers, never the job. */
const MAX_CARDS_PER_REQUEST = 65536;

export class Controller {
  readonly #server: Server;
  readonly #secret: string;
  readonly #size: number;
  readonly #events: ControllerEvents;
  readonly #kv = new Map<string, unknown>();
  readonly #sockets = new Map<number, Socket>();
  #fenceWaiting = new Set<number>();
  #fenceEpoch = 0;
  /** Requests waiting for the card of a rank (by that rank). */
  readonly #awaiting = new Map<number, CardRequest[]>();
  readonly #traffic = new Map<number, CardTraffic>();

  readonly #nodes: number;
  readonly #agents = new Set<number>();

  constructor(secret: string, size: number, events: ControllerEvents, nodes = 0) {
    this.#secret = secret;
    this.#size = size;
    this.#nodes = nodes;
    this.#events = events;
    this.#server = createServer((socket) => this.#accept(socket));
  }

  /** Listens on a Unix socket path, or on host:0 (TCP) for jobs across nodes; returns the address. */
  listen(where: { path: string } | { host: string }): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      if ('path' in where) this.#server.listen(where.path, () => resolve(where.path));
      else
        this.#server.listen({ host: where.host, port: 0, exclusive: true }, () => {
          const a = this.#server.address() as AddressInfo;
          resolve(`${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
        });
    });
  }

  /** What the card service has sent each rank so far (MPRUN_DEBUG, tests). */
  traffic(): ReadonlyMap<number, Readonly<CardTraffic>> {
    return this.#traffic;
  }

  close(): void {
    for (const s of this.#sockets.values()) s.destroy();
    this.#server.close();
  }

  #accept(socket: Socket): void {
    let rank = -1;
    let node = -1;
    serveConnection(
      socket,
      this.#secret,
      (auth) => {
        if (auth.role === 'agent') {
          const n = auth.node;
          if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n >= this.#nodes || this.#agents.has(n)) throw new Error(`bad node ${String(n)}`);
          node = n;
          this.#agents.add(n);
          socket.setNoDelay(true);
          socket.on('close', () => this.#events.agentClosed?.(n));
          this.#events.agentConnected?.(n, (f) => void socket.write(encodeFrame(f)));
          return;
        }
        const r = auth.rank;
        if (typeof r !== 'number' || !Number.isInteger(r) || r < 0 || r >= this.#size || this.#sockets.has(r)) throw new Error(`bad rank ${String(r)}`);
        rank = r;
        this.#sockets.set(rank, socket);
        this.#events.connected(rank);
        socket.on('close', () => {
          if (this.#sockets.get(rank) === socket) this.#sockets.delete(rank);
        });
      },
      (f) => (node >= 0 ? this.#events.agentFrame?.(node, f) : this.#frame(rank, f)),
      (why) => this.#events.rejected(why),
    );
  }

  #frame(rank: number, f: Frame): void {
    switch (f.t) {
      case 'put': {
        if (typeof f.key !== 'string') throw new Error('put without a key');
        this.#kv.set(f.key, f.value);
        const m = /^card:(\d+)$/.exec(f.key);
        if (m !== null) this.#cardPut(Number(m[1]));
        return;
      }
      case 'cards':
        this.#cardsAsked(rank, f);
        return;
      case 'fence':
        this.#fenceWaiting.add(rank);
        if (this.#fenceWaiting.size === this.#size) {
          const kv = Object.fromEntries(this.#kv);
          const reply = encodeFrame({ t: 'fenced', epoch: this.#fenceEpoch++, kv });
          for (const s of this.#sockets.values()) s.write(reply);
          this.#fenceWaiting = new Set();
        }
        return;
      case 'abort':
        this.#events.abort(rank, typeof f.code === 'number' ? f.code : 1, typeof f.message === 'string' ? f.message : '');
        return;
      case 'waits':
        this.#events.waits?.(rank, parseWaits(f.waits));
        return;
      case 'finalize':
        this.#events.finalized(rank);
        socketReply(this.#sockets.get(rank), { t: 'finalized' });
        return;
      default:
        throw new Error(`unknown frame type '${f.t}'`);
    }
  }

  /** {t:'cards', id, ranks}: answered with those ranks' cards, in that order, once all are put. */
  #cardsAsked(rank: number, f: Frame): void {
    const { id, ranks } = f;
    if (typeof id !== 'number' || !Array.isArray(ranks) || ranks.length > MAX_CARDS_PER_REQUEST) throw new Error('cards needs an id and a list of ranks');
    const req: CardRequest = { rank, id, ranks: [], missing: 0 };
    for (const r of ranks as unknown[]) {
      if (typeof r !== 'number' || !Number.isInteger(r) || r < 0 || r >= this.#size) throw new Error(`no rank ${String(r)} in a job of ${this.#size}`);
      req.ranks.push(r);
      if (!this.#kv.has(`card:${r}`)) {
        req.missing++;
        const list = this.#awaiting.get(r);
        if (list === undefined) this.#awaiting.set(r, [req]);
        else list.push(req);
      }
    }
    if (req.missing === 0) this.#answer(req);
  }

  #cardPut(r: number): void {
    const list = this.#awaiting.get(r);
    if (list === undefined) return;
    this.#awaiting.delete(r);
    for (const req of list) if (--req.missing === 0) this.#answer(req);
  }

  #answer(req: CardRequest): void {
    const reply = encodeFrame({ t: 'cards', id: req.id, cards: req.ranks.map((r) => this.#kv.get(`card:${r}`)) });
    const t = this.#traffic.get(req.rank) ?? { requests: 0, cards: 0, bytes: 0 };
    t.requests++;
    t.cards += req.ranks.length;
    t.bytes += reply.byteLength;
    this.#traffic.set(req.rank, t);
    socketReply(this.#sockets.get(req.rank), reply);
  }
}

function socketReply(s: Socket | undefined, f: Frame | Buffer): void {
  s?.write(Buffer.isBuffer(f) ? f : encodeFrame(f));
}
