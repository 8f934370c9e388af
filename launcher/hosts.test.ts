import { describe, expect, it } from 'vitest';
import { hostname, networkInterfaces } from 'node:os';
import { HostError, isLocalHost, parseHostfile, parseHostList, placeRanks, slurmAllocation } from './hosts.js';

describe('hosts and placement', () => {
  it('parses --host lists and hostfiles', () => {
    expect(parseHostList('a:4,b:2,c')).toEqual([{ host: 'a', slots: 4 }, { host: 'b', slots: 2 }, { host: 'c', slots: 1 }]);
    expect(parseHostList('a,a')).toEqual([{ host: 'a', slots: 2 }]);
    expect(parseHostfile('# cluster\nnode1 slots=4\n\nnode2 slots=2 max_slots=8 # big\nnode3\n')).toEqual([
      { host: 'node1', slots: 4 },
      { host: 'node2', slots: 2 },
      { host: 'node3', slots: 1 },
    ]);
    expect(() => parseHostfile('node1 cpus=4', 'hf')).toThrow(/hf:1: unknown attribute 'cpus=4'/);
    expect(() => parseHostList('a:0')).toThrow(HostError);
    expect(() => parseHostList('bad host')).toThrow(/not a host name/);
    expect(() => parseHostfile('# nothing\n')).toThrow(/names no host/);
  });

  it('fills nodes by slot, or round-robins with --map-by node', () => {
    const hosts = [{ host: 'a', slots: 2 }, { host: 'b', slots: 2 }];
    expect(placeRanks(hosts, 4, 'slot')).toEqual([{ host: 'a', ranks: [0, 1] }, { host: 'b', ranks: [2, 3] }]);
    expect(placeRanks(hosts, 3, 'slot')).toEqual([{ host: 'a', ranks: [0, 1] }, { host: 'b', ranks: [2] }]);
    expect(placeRanks(hosts, 4, 'node')).toEqual([{ host: 'a', ranks: [0, 2] }, { host: 'b', ranks: [1, 3] }]);
    expect(placeRanks(hosts, 1, 'slot')).toEqual([{ host: 'a', ranks: [0] }]);
  });

  it('reads a Slurm allocation', () => {
    const expand = (l: string): string[] => (l === 'n[1-3]' ? ['n1', 'n2', 'n3'] : []);
    expect(slurmAllocation({}, expand)).toBeNull();
    expect(slurmAllocation({ SLURM_JOB_ID: '7', SLURM_JOB_NODELIST: 'n[1-3]', SLURM_TASKS_PER_NODE: '2(x2),1' }, expand)).toEqual([
      { host: 'n1', slots: 2 },
      { host: 'n2', slots: 2 },
      { host: 'n3', slots: 1 },
    ]);
    expect(() => slurmAllocation({ SLURM_JOB_ID: '7', SLURM_JOB_NODELIST: 'n[1-3]', SLURM_TASKS_PER_NODE: '4' }, expand)).toThrow(/3 nodes but tasks for 1/);
  });

  it('refuses more ranks than slots unless oversubscribing', () => {
    const hosts = [{ host: 'a', slots: 1 }, { host: 'b', slots: 1 }];
    expect(() => placeRanks(hosts, 3, 'slot')).toThrow(/3 ranks do not fit in the 2 slots/);
    const over = placeRanks(hosts, 5, 'slot', true);
    expect(over.flatMap((p) => p.ranks).sort()).toEqual([0, 1, 2, 3, 4]);
    expect(placeRanks(hosts, 4, 'node', true)).toEqual([{ host: 'a', ranks: [0, 2] }, { host: 'b', ranks: [1, 3] }]);
  });

  it("knows this machine's names: localhost, 127.x, ::1, its hostname and addresses (no ssh for them)", () => {
    for (const h of ['localhost', 'LOCALHOST', 'localhost.localdomain', '127.0.0.1', '127.1.2.3', '::1', '[::1]', hostname(), hostname().split('.')[0]!]) expect(isLocalHost(h), h).toBe(true);
    const mine = Object.values(networkInterfaces()).flatMap((a) => a ?? []).map((a) => a.address);
    for (const a of mine) expect(isLocalHost(a), a).toBe(true);
    for (const h of ['node2', 'user@localhost', '10.255.255.254', 'unreachable.invalid', '128.0.0.1']) expect(isLocalHost(h), h).toBe(false);
  });
});
