/**
 * A rank's connections to the other nodes' agents, as one transport
 * instance: each opened on first use (a peer on that node bound, or a shared
 * variable's page homed there; issue 12.4), at most one per node, shared by
 * that node's endpoints and by the shared variables. Their output is pumped
 * by every wait of the rank, and an asynchronous wait yields to the event
 * loop while replies (or a connection being opened) are awaited.
 */
import type { TransportInstance } from '../endpoint.js';
import { wireupStats } from '../peers.js';
import { AgentLink, outputQueued, pumpAll } from './client.js';

/** Where node `node`'s agent listens (from a card of one of its ranks, fetched on first use). */
export type AgentAddress = (node: number) => Promise<{ name: string; address: string }>;

export class AgentLinks implements TransportInstance {
  readonly name = 'dsm';
  readonly #byNode = new Map<number, AgentLink>();
  readonly #opening = new Map<number, Promise<AgentLink>>();
  readonly #secret: string;
  readonly #rank: number;
  readonly #addressOf: AgentAddress;
  #closed = false;

  /** Links of `rank`, authenticating with the job's `secret`; none is open yet. */
  constructor(secret: string, rank: number, addressOf: AgentAddress) {
    this.#secret = secret;
    this.#rank = rank;
    this.#addressOf = addressOf;
  }

  /** The link to node `node`'s agent: at once when open, else opened (its address looked up first). */
  linkTo(node: number): AgentLink | Promise<AgentLink> {
    const l = this.#byNode.get(node);
    if (l !== undefined) return l;
    return this.#opening.get(node) ?? this.#addressOf(node).then((a) => this.open(node, a.name, a.address));
  }

  /** The link to node `node`'s agent, or null when it is not open (yet). */
  of(node: number): AgentLink | null {
    return this.#byNode.get(node) ?? null;
  }

  /** The link to node `node`'s agent at `address`, connecting the first time (once, however many ask at once). */
  open(node: number, name: string, address: string): Promise<AgentLink> {
    const l = this.#byNode.get(node);
    if (l !== undefined) return Promise.resolve(l);
    let p = this.#opening.get(node);
    if (p === undefined) {
      p = AgentLink.open(node, name, address, this.#secret, this.#rank).then(
        (link) => {
          this.#opening.delete(node);
          if (this.#closed) link.close();
          else this.#byNode.set(node, link);
          wireupStats().linksOpened++;
          return link;
        },
        (e: unknown) => {
          this.#opening.delete(node);
          throw e;
        },
      );
      this.#opening.set(node, p);
    }
    return p;
  }

  /**
   * The link to node `node`'s agent, opened now without the event loop (a
   * synchronous collective's first message there): null when this Node cannot
   * connect so (connect-now.ts) or a connection is being opened already.
   */
  openNow(node: number, name: string, address: string): AgentLink | null {
    const known = this.#byNode.get(node);
    if (known !== undefined) return known;
    if (this.#opening.has(node) || this.#closed) return null;
    const link = AgentLink.openNow(node, name, address, this.#secret, this.#rank);
    if (link === null) return null;
    this.#byNode.set(node, link);
    wireupStats().linksOpened++;
    return link;
  }

  /** Links opened so far. */
  get size(): number {
    return this.#byNode.size;
  }

  /** Pushes queued output; replies are read by the event loop. */
  progress(): boolean {
    pumpAll();
    return false;
  }

  /** Output queued, a reply awaited, or a link being opened. */
  busy(): boolean {
    if (outputQueued() || this.#opening.size > 0) return true;
    for (const l of this.#byNode.values()) if (l.waiting) return true;
    return false;
  }

  /** Flushes every link that has puts outstanding. */
  flushAll(): Promise<unknown> {
    return Promise.all([...this.#byNode.values()].map((l) => l.flush()));
  }

  close(): void {
    this.#closed = true;
    for (const l of this.#byNode.values()) l.close();
  }
}
