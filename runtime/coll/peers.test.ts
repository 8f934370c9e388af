/**
 * leaderPeers() against the collectives themselves: every MsgCollectives
 * member runs each collective rooted nowhere or at a node's first member over
 * an in-memory network that records who sends to whom across nodes; every
 * partner a member met must be among its leaderPeers (the wire-up prepares
 * those ahead, so synchronous collectives never wait for a card), and the
 * list stays within about 3 lg P.
 */
import { describe, expect, it } from 'vitest';
import { packValue, unpackValue } from '../../core/codec.js';
import type { Message } from '../p2p.js';
import { KIND, partsOf, type Ready, type Steps } from './engine.js';
import { LARGE_ALLREDUCE_BYTES } from './msg-reduce.js';
import { MsgCollectives } from './msg.js';
import { leaderPeers } from './peers.js';
import { ceilLog2 } from './schedules.js';

function team(nodes: number[], reproducible: boolean, met: Array<Set<number>>): MsgCollectives[] {
  const queues = new Map<string, Message[]>();
  return nodes.map(
    (_, me) =>
      new MsgCollectives({
        me,
        size: nodes.length,
        worldRanks: nodes.map((_, r) => r),
        nodes,
        slot: 2,
        reproducible,
        messenger: () => ({
          sendInternal: (dest: number, data: unknown, tag: number) => {
            if (nodes[dest] !== nodes[me]) met[me]!.add(dest);
            const key = `${dest}:${me}:${tag}`;
            const q = queues.get(key) ?? [];
            q.push({ data: unpackValue(packValue(data)), source: me, tag });
            queues.set(key, q);
          },
          takeInternal: (source: number, tag: number) => queues.get(`${me}:${source}:${tag}`)?.shift() ?? null,
        }),
      }),
  );
}

function run<T>(gens: Array<Steps<T>>): void {
  const pending: Array<Ready | null> = gens.map(() => null);
  const done = gens.map(() => false);
  while (done.some((d) => !d)) {
    let moved = false;
    gens.forEach((g, i) => {
      if (done[i] || (pending[i] !== null && !pending[i]!())) return;
      const r = g.next();
      moved = true;
      if (r.done === true) done[i] = true;
      else pending[i] = r.value;
    });
    if (!moved) throw new Error('deadlock');
  }
}

const LAYOUTS: Array<[string, (p: number) => number[]]> = [
  ['2 per node', (p) => Array.from({ length: p }, (_, r) => Math.floor(r / 2))],
  ['round-robin over 5', (p) => Array.from({ length: p }, (_, r) => r % 5)],
  ['one per node', (p) => Array.from({ length: p }, (_, r) => r)],
];

describe('the network peers a team member is prepared for', () => {
  for (const reproducible of [false, true]) {
    for (const [name, layout] of LAYOUTS) {
      it(`cover every partner of the collectives rooted at node leaders, p = 1..20, ${name}${reproducible ? ', reproducible' : ''}`, () => {
        for (let p = 1; p <= 20; p++) {
          const nodes = layout(p);
          const met = nodes.map(() => new Set<number>());
          const t = team(nodes, reproducible, met);
          const firsts = nodes.map((n, r) => (nodes.indexOf(n) === r ? r : -1)).filter((r) => r >= 0);
          run(t.map((c) => c.barrier()));
          run(t.map((c, r) => c.gather({ r }, null)));
          run(t.map((c, r) => c.reduce(Float64Array.of(r), 'sum', KIND.allreduce, 0, null, null)));
          const big = LARGE_ALLREDUCE_BYTES / 8 + p;
          run(t.map((c) => c.reduce(new Float64Array(big).fill(1), 'sum', KIND.allreduce, 0, null, null)));
          for (const root of firsts) {
            run(t.map((c, r) => c.bcast(r === root ? { root } : null, root)));
            run(t.map((c, r) => c.gather(r, root)));
            run(t.map((c, r) => c.reduce(Float64Array.of(r), 'sum', KIND.reduce, root, null, null)));
            const parts = partsOf(Int32Array.from({ length: p }, (_, i) => i), p, 'scatter');
            run(t.map((c, r) => c.scatter(r === root ? parts : null, root)));
          }
          const P = firsts.length;
          nodes.forEach((_, r) => {
            const peers = leaderPeers(nodes, r);
            for (const m of met[r]!) expect(peers, `p=${p} member ${r} met ${m}`).toContain(m);
            expect(peers.length).toBeLessThanOrEqual(3 * ceilLog2(P));
            if (!firsts.includes(r)) expect(peers).toEqual([]);
          });
        }
      }, 60_000);
    }
  }

  it('stay O(log nodes) at 1,000 nodes x 64 ranks: at most 3 lg P for a leader, none for the others', () => {
    const nodes = Array.from({ length: 64_000 }, (_, r) => Math.floor(r / 64));
    let most = 0;
    for (let n = 0; n < 1000; n++) most = Math.max(most, leaderPeers(nodes, n * 64).length);
    expect(most).toBeLessThanOrEqual(3 * ceilLog2(1000));
    expect(most).toBeGreaterThanOrEqual(ceilLog2(1000));
    expect(leaderPeers(nodes, 65)).toEqual([]);
  });
});
