/**
 * The UCX transport (issue 12): libucp loaded at run time through the addon,
 * one-sided operations on peers' registered heaps, messages as active
 * messages, progress from the rank's engine and a native thread. See
 * transport.ts (a rank's UCX), endpoint.ts (a peer), card.ts (what a rank
 * publishes), inbox.ts (arriving messages).
 */
import { nativeAvailable, native, nativeError } from '../../native/index.js';
import type { NativeUcx } from '../../native/index.js';
import { resourcesOf } from './transport.js';

export { progressSpinMicros, UcxTransport, resourcesOf, UCX_TCP_BANDWIDTH, UCX_TCP_LATENCY } from './transport.js';
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
  /** UCX's resources, "transport/device" ("tcp/eth0", "sysv/memory"). */
  devices: string[];
}

/**
 * A cheap probe that never throws: loads libucp (once per process), checks
 * its version, and makes and drops a UCP context (a few milliseconds) to see
 * which transports UCX_TLS leaves; `transports` are those UCX reports.
 */
export function query(): UcxAvailability {
  const transports = tlsFromEnv();
  const no = (reason: string, version = '', library = ''): UcxAvailability => ({ available: false, reason, version, transports, library, devices: [] });
  if (!nativeAvailable()) return no(nativeError ?? 'no native addon');
  try {
    const ucx = native().ucx as Partial<NativeUcx>;
    if (ucx?.probe === undefined) return no('the native addon has no UCX binding (rebuild it: npm install)');
    const p = ucx.probe();
    if (!p.loaded || ucx.resources === undefined) return no(p.reason, p.version, p.path);
    const r = ucx.resources();
    if (!r.ok) return no(r.reason, p.version, p.path);
    const devices = resourcesOf(r.contextInfo);
    const found = [...new Set(devices.map((x) => x.split('/')[0]!))];
    if (found.length === 0) return no(`UCX ${p.version} reports no transport${transports.length > 0 ? ` among UCX_TLS=${transports.join(',')}` : ''}`, p.version, p.path);
    return { available: true, reason: `libucp ${p.version} loaded from ${p.path}`, version: p.version, transports: found, library: p.path, devices };
  } catch (e) {
    return no((e as Error).message);
  }
}

/** UCX_TLS as a list ([] when unset: UCX picks from every transport it has). */
export function tlsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  const v = env.UCX_TLS;
  return v === undefined || v.trim() === '' ? [] : v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

/** UCX's TCP segment sizes: 128K each when neither is set (native/ucx-lib.cc says why), else the user's and UCX's own. */
function tcpSegRows(given: NodeJS.ProcessEnv): Array<[string, string]> {
  const tx = given.UCX_TCP_TX_SEG_SIZE;
  const rx = given.UCX_TCP_RX_SEG_SIZE;
  if (tx === undefined && rx === undefined) {
    const why = "128K (default, over any ucx.conf): 1 MiB puts and gets in 8 segments, not 128 (2.1 and 2.5 GB/s against 0.9 at UCX's 8K/64K)";
    return [['UCX_TCP_TX_SEG_SIZE', why], ['UCX_TCP_RX_SEG_SIZE', '128K (default: the send segment may not exceed it)']];
  }
  const shown = (v: string): string => `${v === '' ? '(empty)' : v} (set)`;
  return [
    ['UCX_TCP_TX_SEG_SIZE', tx !== undefined ? shown(tx) : "UCX's (8K unless ucx.conf says otherwise; mprun sets both or neither)"],
    ['UCX_TCP_RX_SEG_SIZE', rx !== undefined ? shown(rx) : "UCX's (64K unless ucx.conf says otherwise; mprun sets both or neither)"],
  ];
}

/**
 * The UCX section of `mprun info`: rows of (name, text). Never throws. `given`:
 * the environment before anything loaded UCX, which sets UCX_ERROR_SIGNALS,
 * UCX_MEM_EVENTS and the TCP segment sizes where unset.
 */
export function ucxInfoRows(given: NodeJS.ProcessEnv = { ...process.env }): Array<[string, string]> {
  const env = (k: string, dflt: string): string => (given[k] !== undefined ? `${given[k] === '' ? '(empty)' : given[k]} (set)` : `${dflt} (default)`);
  const q = query();
  const thread = process.env.MPRUN_UCX_PROGRESS_THREAD !== '0';
  return [
    ['ucx', q.available ? `usable: ${q.reason}` : `NOT USABLE: ${q.reason}`],
    ['version', q.version === '' ? 'unknown (library not loaded)' : `${q.version} (mprun needs >= 1.9); library ${q.library}`],
    ['transports', q.transports.length > 0 ? q.transports.join(', ') : 'none'],
    ['devices', q.devices.length > 0 ? q.devices.join(', ') : 'none'],
    ['progress thread', thread ? 'on: gets and atomics complete while the target computes (MPRUN_UCX_PROGRESS_THREAD=0: off)' : 'off (MPRUN_UCX_PROGRESS_THREAD=0): over TCP a computing target stalls gets and atomics'],
    ['UCX_TLS', env('UCX_TLS', 'every transport UCX finds')],
    ['UCX_NET_DEVICES', env('UCX_NET_DEVICES', 'all')],
    ['UCX_ERROR_SIGNALS', env('UCX_ERROR_SIGNALS', 'empty: Node keeps its own SIGSEGV handler')],
    ['UCX_MEM_EVENTS', env('UCX_MEM_EVENTS', 'n: no mmap hooks racing with Node threads')],
    ...tcpSegRows(given),
    ['MPRUN_UCX_LIB', env('MPRUN_UCX_LIB', 'libucp.so.0')],
  ];
}
