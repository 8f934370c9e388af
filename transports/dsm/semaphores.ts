/**
 * The networked semaphores homed at this agent (a name's home: the node its
 * hash picks; shared.ts). Each is a count and a queue of waiting requests:
 * a WAIT takes a permit or waits, first come first served; a POST hands its
 * permit to the oldest waiter still connected, else adds it to the count.
 * CREATE makes the semaphore on its first call only, so every rank may send it.
 */
import { RequestRefused, SemOp } from './frames.js';

/** Answers a request; false when its connection is gone (the answer went nowhere). */
export type Grant = () => boolean;

interface Semaphore {
  count: number;
  /** Grants, oldest first. */
  waiters: Array<Grant>;
}

export class SemaphoreTable {
  readonly #sems = new Map<string, Semaphore>();

  /**
   * Runs semaphore operation `op` (SemOp) on `name`; `grant` answers the
   * request: at once, or for a WAIT without a permit, when a POST hands it one
   * (a waiter whose connection is gone passes the permit on). `initial`: the
   * count CREATE starts it with.
   */
  serve(op: number, name: string, initial: number, grant: Grant): void {
    if (op === SemOp.CREATE) {
      if (!this.#sems.has(name)) this.#sems.set(name, { count: initial, waiters: [] });
      grant();
      return;
    }
    const s = this.#sems.get(name);
    if (s === undefined) throw new RequestRefused(`no semaphore '${name}' here`);
    if (op === SemOp.WAIT) {
      if (s.count > 0) {
        s.count--;
        grant();
      } else s.waiters.push(grant);
    } else if (op === SemOp.POST) {
      let handed = false;
      while (!handed && s.waiters.length > 0) handed = s.waiters.shift()!();
      if (!handed) s.count++;
      grant();
    } else throw new RequestRefused(`unknown semaphore operation ${op}`);
  }

  /** The permits of `name` and the requests waiting for one (undefined: no such semaphore). */
  state(name: string): { count: number; waiting: number } | undefined {
    const s = this.#sems.get(name);
    return s === undefined ? undefined : { count: s.count, waiting: s.waiters.length };
  }
}
