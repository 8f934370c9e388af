/**
 * The UCX transport (issue 12): libucp loaded at run time through the addon,
 * one-sided operations on peers' registered heaps, messages as active
 * messages, progress from the rank's engine and a native thread. See
 * transport.ts (a rank's UCX), endpoint.ts (a peer), card.ts (what a rank
 * publishes), inbox.ts (arriving messages).
 */
import { nativeAvailable, native, nativeError } from '../../native/index.js';
import { resourcesOf } from './transport.js';

export { UcxTransport, resourcesOf, UCX_TCP_BANDWIDTH, UCX_TCP_LATENCY } from './transport.js';
export type { UcxTransportOptions } from './transport.js';
export { UcxEndpoint, lanesOf } from './endpoint.js';
export type { UcxCard } from './card.js';
export { checkCard } from './card.js';

export interface UcxAvailability {
  available: boolean;
  /** Why not (or, when available, what was found). */
  reason: string;
  /** UCX's version ("1.13.1"), '' when the library was not found. */
  version: string;
  /** The transports UCX reports (under UCX_TLS when set); when unavailable, UCX_TLS as given. */
  transports: string[];
  /** The library file tried ($MPRUN_UCX_LIB, else libucp.so.0). */
  library: string;
}

/**
 * A cheap probe that never throws: loads libucp (once per process), checks
 * its version, and makes and drops a UCP context (a few milliseconds) to see
 * which transports UCX_TLS leaves; `transports` are those UCX reports.
 */
export function query(): UcxAvailability {
  const transports = tlsFromEnv();
  if (!nativeAvailable()) return { available: false, reason: nativeError ?? 'no native addon', version: '', transports, library: '' };
  try {
    const p = native().ucx.probe();
    if (!p.loaded) return { available: false, reason: p.reason, version: p.version, transports, library: p.path };
    const r = native().ucx.resources();
    const found = [...new Set(resourcesOf(r.contextInfo).map((x) => x.split('/')[0]!))];
    if (!r.ok) return { available: false, reason: r.reason, version: p.version, transports, library: p.path };
    if (found.length === 0) return { available: false, reason: `UCX ${p.version} reports no transport${transports.length > 0 ? ` among UCX_TLS=${transports.join(',')}` : ''}`, version: p.version, transports, library: p.path };
    return { available: true, reason: `libucp ${p.version} loaded from ${p.path}`, version: p.version, transports: found, library: p.path };
  } catch (e) {
    return { available: false, reason: (e as Error).message, version: '', transports, library: '' };
  }
}

/** UCX_TLS as a list ([] when unset: UCX picks from every transport it has). */
export function tlsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  const v = env.UCX_TLS;
  return v === undefined || v.trim() === '' ? [] : v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}
