import { describe, expect, it } from 'vitest';
import { modelledTime, selectTransport, type TransportCandidate } from './select.js';
import { TRANSPORTS as BUILTIN_TRANSPORTS } from './registry.js';

const fake = (name: string, latency: number, bandwidth: number, sameNodeOnly: boolean): TransportCandidate => ({
  name,
  attrs: { latency, bandwidth },
  reach: (s, p) => (!sameNodeOnly || s.node === p.node ? { ok: true } : { ok: false, reason: `${name} is node-local` }),
});

describe('transport selection', () => {
  it('picks the reachable transport with the lowest modelled time', () => {
    const c = [fake('slow', 5e-6, 1e9, false), fake('fast', 1e-7, 10e9, true)];
    expect(selectTransport({ rank: 0, node: 'a' }, { rank: 1, node: 'a' }, c)).toMatchObject({ ok: true, transport: 'fast' });
    expect(selectTransport({ rank: 0, node: 'a' }, { rank: 1, node: 'b' }, c)).toMatchObject({ ok: true, transport: 'slow' });
  });

  it('weighs bandwidth at large representative sizes', () => {
    const c = [fake('lowlat', 1e-7, 1e9, false), fake('highbw', 2e-6, 20e9, false)];
    expect(selectTransport({ rank: 0, node: 'a' }, { rank: 1, node: 'a' }, c, 8)).toMatchObject({ transport: 'lowlat' });
    expect(selectTransport({ rank: 0, node: 'a' }, { rank: 1, node: 'a' }, c, 1 << 20)).toMatchObject({ transport: 'highbw' });
    expect(modelledTime(c[1]!.attrs, 20e9)).toBeCloseTo(1 + 2e-6);
  });

  it('carries every reason when nothing reaches the peer', () => {
    const r = selectTransport({ rank: 0, node: 'a' }, { rank: 3, node: 'b' }, BUILTIN_TRANSPORTS);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reasons).toHaveLength(4);
      expect(r.reasons.join('\n')).toMatch(/self: not this rank/);
      expect(r.reasons.join('\n')).toMatch(/xpmem: rank 3 is on node b, not a/);
      expect(r.reasons.join('\n')).toMatch(/dsm: rank 3's node b has no agent serving data/);
      expect(r.reasons.join('\n')).toMatch(/ucx: rank 3 opened no UCX worker/);
    }
  });

  it('uses self for the rank itself and xpmem within a node', () => {
    expect(selectTransport({ rank: 2, node: 'a' }, { rank: 2, node: 'a' }, BUILTIN_TRANSPORTS)).toMatchObject({ transport: 'self' });
    expect(selectTransport({ rank: 2, node: 'a' }, { rank: 1, node: 'a', agent: '10.0.0.1:4000' }, BUILTIN_TRANSPORTS)).toMatchObject({ transport: 'xpmem' });
  });

  it('uses dsm for a rank on another node whose agent serves data', () => {
    expect(selectTransport({ rank: 0, node: 'a' }, { rank: 5, node: 'b', agent: '10.0.0.2:4000' }, BUILTIN_TRANSPORTS)).toMatchObject({ ok: true, transport: 'dsm' });
  });
});
