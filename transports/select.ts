/**
 * Transport selection, kept pure so that it is unit-tested with fake
 * attributes (the transports themselves are listed in registry.ts): for each peer, the available transport that reaches it with the
 * lowest modelled time for a representative message (latency + size/bandwidth).
 * Unreachable peers carry the reasons of every transport.
 */

/** What the selector models a transport by (a bound endpoint's full capabilities: transports/endpoint.ts). */
export interface TransportAttrs {
  /** One-way latency of a small message, in seconds. */
  latency: number;
  /** Bandwidth of one stream, in bytes per second. */
  bandwidth: number;
}

export interface PeerLocation {
  rank: number;
  node: string;
  /** The data address of the peer's node agent, when the job spans nodes. */
  agent?: string | null;
  /** Whether the peer published a UCX card (its rank opened UCX). */
  ucx?: boolean;
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
