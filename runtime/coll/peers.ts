/**
 * Which members a team member will talk to over the network in the
 * collectives of msg.ts, known when the team is made (issue 12.4): the
 * wire-up fetches those members' cards and opens their links then, at a point
 * that can await, so that synchronous collectives (alloc, split) never meet a
 * peer without an endpoint. Only node leaders (a node's first member) talk
 * across nodes; among the P leaders, the schedules of schedules.ts reach:
 *
 *   dissemination, Bruck's, binomial trees (any root)   g +- 2^k (mod P)
 *   recursive doubling, recursive halving              g ^ 2^k (below q), g +- q
 *
 * so at most about 3 lg P leaders. Collectives rooted at a member that is not
 * its node's first (it leads its node then), scan (among all members) and
 * alltoall (every pair) reach others: those bind on first use.
 */
import { floorPow2 } from './schedules.js';

/**
 * The team ranks `me` exchanges network messages with in the collectives
 * rooted nowhere or at node leaders, given each member's node; empty for a
 * member that is not its node's first.
 */
export function leaderPeers(nodes: readonly number[], me: number): number[] {
  const first = new Map<number, number>();
  const leaders: number[] = [];
  nodes.forEach((n, r) => {
    if (!first.has(n)) {
      first.set(n, r);
      leaders.push(r);
    }
  });
  const g = leaders.indexOf(me);
  const P = leaders.length;
  if (g < 0 || P < 2) return [];
  const groups = new Set<number>();
  for (let d = 1; d < P; d *= 2) {
    groups.add((g + d) % P);
    groups.add((g - d + P) % P);
  }
  const q = floorPow2(P);
  if (g < q) for (let d = 1; d < q; d *= 2) groups.add(g ^ d);
  if (g >= q) groups.add(g - q);
  if (g + q < P) groups.add(g + q);
  groups.delete(g);
  return [...groups].sort((a, b) => a - b).map((x) => leaders[x]!);
}
