/**
 * Transport selection, kept pure so that it is unit-tested with fake
 * attributes: for each peer, the available transport that reaches it with the
 * lowest modelled time for a representative message (latency + size/bandwidth).
 * Unreachable peers carry the reasons of every transport.
 */

export interface TransportAttrs {
  /** One-way latency of a small message, in seconds. */
  latency: number;
  /** Bandwidth of one stream, in bytes per second. */
  bandwidth: number;
  /** Whether remote memory can be mapped for loads and stores (world.ptr). */
  canMap: boolean;
  /** Whether remote atomics run in hardware on the target's memory. */
  hardwareAtomics: boolean;
}

export interface PeerLocation {
  rank: number;
  node: string;
  /** The data address of the peer's node agent, when the job spans nodes. */
  agent?: string | null;
}

export interface TransportCandidate {
  name: string;
  attrs: TransportAttrs;
  /** Whether this transport reaches `peer` from `self`, and if not, why. */
  reach(self: PeerLocation, peer: PeerLocation): { ok: true } | { ok: false; reason: string };
}

export type Selection = { ok: true; transport: string; attrs: TransportAttrs } | { ok: false; reasons: string[] };

/** Modelled seconds to move `bytes` with these attributes. */
export function modelledTime(a: TransportAttrs, bytes: number): number {
  return a.latency + bytes / a.bandwidth;
}

export function selectTransport(self: PeerLocation, peer: PeerLocation, candidates: readonly TransportCandidate[], representativeBytes = 8): Selection {
  let best: TransportCandidate | null = null;
  const reasons: string[] = [];
  for (const c of candidates) {
    const r = c.reach(self, peer);
    if (!r.ok) {
      reasons.push(`${c.name}: ${r.reason}`);
      continue;
    }
    if (best === null || modelledTime(c.attrs, representativeBytes) < modelledTime(best.attrs, representativeBytes)) best = c;
  }
  return best === null ? { ok: false, reasons } : { ok: true, transport: best.name, attrs: best.attrs };
}

/** The transports of this build, with honest attributes measured on the reference machine (see README). */
export const SELF: TransportCandidate = {
  name: 'self',
  attrs: { latency: 2e-8, bandwidth: 40e9, canMap: true, hardwareAtomics: true },
  reach: (self, peer) => (self.rank === peer.rank ? { ok: true } : { ok: false, reason: 'not this rank' }),
};

export const XPMEM: TransportCandidate = {
  name: 'xpmem',
  attrs: { latency: 3e-7, bandwidth: 11e9, canMap: true, hardwareAtomics: true },
  reach: (self, peer) => (self.node === peer.node ? { ok: true } : { ok: false, reason: `rank ${peer.rank} is on node ${peer.node}, not ${self.node}` }),
};

/**
 * Ranks on other nodes, through their node agent over TCP (transports/dsm).
 * Latency and bandwidth measured over a veth pair on the reference machine.
 */
export const DSM: TransportCandidate = {
  name: 'dsm',
  attrs: { latency: 4e-5, bandwidth: 1.5e9, canMap: false, hardwareAtomics: true },
  reach: (self, peer) => {
    if (self.node === peer.node) return { ok: false, reason: 'same node' };
    if (peer.agent === null || peer.agent === undefined) return { ok: false, reason: `rank ${peer.rank}'s node ${peer.node} has no agent serving data (the job was not started across nodes)` };
    return { ok: true };
  },
};

export const BUILTIN_TRANSPORTS: readonly TransportCandidate[] = [SELF, XPMEM, DSM];
