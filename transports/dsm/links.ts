/**
 * A rank's connections to the other nodes' agents, as one transport
 * instance: opened at init for every node a peer lives on (so a node that
 * cannot be reached fails init), shared by that node's endpoints and by the
 * shared variables. Their output is pumped by every wait of the rank, and an
 * asynchronous wait yields to the event loop while replies are awaited.
 */
import type { TransportInstance } from '../endpoint.js';
import { AgentLink, outputQueued, pumpAll } from './client.js';

export class AgentLinks implements TransportInstance {
  readonly name = 'dsm';
  readonly #byNode = new Map<number, AgentLink>();

  private constructor(links: AgentLink[]) {
    for (const l of links) this.#byNode.set(l.node, l);
  }

  /** Connects to the agent of each node in `nodes` (index -> name and data address) as `rank`. */
  static async open(nodes: ReadonlyMap<number, { name: string; address: string }>, secret: string, rank: number): Promise<AgentLinks> {
    return new AgentLinks(await Promise.all([...nodes].map(([n, a]) => AgentLink.open(n, a.name, a.address, secret, rank))));
  }

  /** The link to node `node`'s agent, or null when none was opened (a one-node job, or this node). */
  of(node: number): AgentLink | null {
    return this.#byNode.get(node) ?? null;
  }

  get size(): number {
    return this.#byNode.size;
  }

  /** Pushes queued output; replies are read by the event loop. */
  progress(): boolean {
    pumpAll();
    return false;
  }

  /** Output queued, or a reply awaited. */
  busy(): boolean {
    if (outputQueued()) return true;
    for (const l of this.#byNode.values()) if (l.waiting) return true;
    return false;
  }

  /** Flushes every link that has puts outstanding. */
  flushAll(): Promise<unknown> {
    return Promise.all([...this.#byNode.values()].map((l) => l.flush()));
  }

  close(): void {
    for (const l of this.#byNode.values()) l.close();
  }
}
