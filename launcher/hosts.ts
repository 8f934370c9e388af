/**
 * Where ranks go: hosts from --host (`a:4,b:4`, or `a,b` for a slot each) or
 * an Open MPI hostfile (`host slots=N`, `#` comments), and placement by slot
 * (fill a node, then the next; the default) or round robin (`--map-by node`).
 */
import { readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';

export interface HostSlots {
  host: string;
  slots: number;
}

export interface NodePlan {
  /** The node's name, as given (ssh target). */
  host: string;
  /** World ranks on this node, ascending; their index is the local rank. */
  ranks: number[];
}

export class HostError extends Error {}

/**
 * Whether `name` is this machine: localhost (and *.localhost, ip6-localhost),
 * 127.x.y.z, ::1, this hostname (full or short) or one of its addresses. Such a
 * host is reached without ssh, for ranks (--host) and checkpoint targets alike.
 * A name with a user (`user@localhost`) asks for ssh and is not local.
 */
export function isLocalHost(name: string): boolean {
  if (name.includes('@')) return false;
  const n = name.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (n === 'localhost' || n === 'localhost.localdomain' || n === 'ip6-localhost' || n === 'ip6-loopback' || n.endsWith('.localhost')) return true;
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(n) || n === '::1' || n === '::ffff:127.0.0.1') return true;
  const me = hostname().toLowerCase();
  if (n === me || n === me.split('.')[0]) return true;
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.address.toLowerCase() === n.replace(/%.*$/, '')) return true;
  }
  return false;
}

const HOST = /^[A-Za-z0-9_.:@\[\]-]+$/;

export function parseHostList(list: string): HostSlots[] {
  const out: HostSlots[] = [];
  for (const item of list.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const m = /^(.*?)(?::(\d+))?$/.exec(item)!;
    const host = m[1]!;
    if (!HOST.test(host)) throw new HostError(`--host: '${host}' is not a host name`);
    const slots = m[2] === undefined ? 1 : Number(m[2]);
    if (!(slots > 0)) throw new HostError(`--host: ${item} needs at least one slot`);
    merge(out, host, slots);
  }
  if (out.length === 0) throw new HostError('--host needs at least one host');
  return out;
}

export function parseHostfile(text: string, name = 'hostfile'): HostSlots[] {
  const out: HostSlots[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const [host, ...attrs] = line.split(/\s+/);
    if (!HOST.test(host!)) throw new HostError(`${name}:${i + 1}: '${host}' is not a host name`);
    let slots = 1;
    for (const a of attrs) {
      const m = /^(slots|max_slots|max-slots)=(\d+)$/.exec(a);
      if (m === null) throw new HostError(`${name}:${i + 1}: unknown attribute '${a}' (expected slots=N)`);
      if (m[1] === 'slots') slots = Number(m[2]);
    }
    if (!(slots > 0)) throw new HostError(`${name}:${i + 1}: slots must be positive`);
    merge(out, host!, slots);
  });
  if (out.length === 0) throw new HostError(`${name} names no host`);
  return out;
}

export function readHostfile(path: string): HostSlots[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new HostError(`cannot read hostfile ${path}: ${(e as Error).message}`);
  }
  return parseHostfile(text, path);
}

function merge(out: HostSlots[], host: string, slots: number): void {
  const seen = out.find((h) => h.host === host);
  if (seen) seen.slots += slots;
  else out.push({ host, slots });
}

/** Places `np` ranks on the hosts; more ranks than slots is refused (as mpirun does without --oversubscribe). */
export function placeRanks(hosts: HostSlots[], np: number, mapBy: 'slot' | 'node', oversubscribe = false): NodePlan[] {
  const total = hosts.reduce((a, h) => a + h.slots, 0);
  if (np > total && !oversubscribe) throw new HostError(`${np} ranks do not fit in the ${total} slots of ${hosts.map((h) => `${h.host}:${h.slots}`).join(',')} (add --oversubscribe)`);
  const plan: NodePlan[] = hosts.map((h) => ({ host: h.host, ranks: [] }));
  const used = hosts.map(() => 0);
  let rank = 0;
  if (mapBy === 'slot') {
    for (let pass = 0; rank < np; pass++) {
      for (let i = 0; i < hosts.length && rank < np; i++) {
        const room = pass === 0 ? hosts[i]!.slots : Math.ceil((np - total) / hosts.length);
        for (let k = 0; k < room && rank < np; k++) plan[i]!.ranks.push(rank++);
      }
    }
  } else {
    while (rank < np) {
      for (let i = 0; i < hosts.length && rank < np; i++) {
        if (used[i]! < hosts[i]!.slots || oversubscribe) {
          plan[i]!.ranks.push(rank++);
          used[i]!++;
        }
      }
    }
  }
  return plan.filter((p) => p.ranks.length > 0);
}

/**
 * The nodes and task counts of the Slurm allocation this process runs in
 * (SLURM_JOB_NODELIST expanded by scontrol, SLURM_TASKS_PER_NODE such as
 * "2(x2),1"), or null outside one.
 */
export function slurmAllocation(env: NodeJS.ProcessEnv, expand: (list: string) => string[]): HostSlots[] | null {
  if (env.SLURM_JOB_ID === undefined) return null;
  const list = env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST;
  if (list === undefined) throw new HostError('in a Slurm job, but SLURM_JOB_NODELIST is not set');
  const names = expand(list);
  const counts: number[] = [];
  for (const part of (env.SLURM_TASKS_PER_NODE ?? env.SLURM_JOB_CPUS_PER_NODE ?? '').split(',').filter((p) => p !== '')) {
    const m = /^(\d+)(?:\(x(\d+)\))?$/.exec(part);
    if (m === null) throw new HostError(`cannot read SLURM_TASKS_PER_NODE '${part}'`);
    for (let i = 0; i < Number(m[2] ?? 1); i++) counts.push(Number(m[1]));
  }
  if (counts.length !== names.length) throw new HostError(`the allocation has ${names.length} nodes but tasks for ${counts.length}`);
  return names.map((host, i) => ({ host, slots: counts[i]! }));
}
