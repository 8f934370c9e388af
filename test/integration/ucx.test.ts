/**
 * The UCX transport between two Node processes on this machine (issue 12):
 * cards exchanged through files, real shared-memory heaps, every operation
 * checked for data (test/fixtures/ucx-peer.ts), over UCX_TLS=tcp and the
 * default transports, with and without the progress thread; a target that
 * computes; and the failures: an unreachable peer, a damaged card, a wrong
 * library, a peer killed mid-operation. Skips (saying why) only when libucp
 * is not installed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native, nativePath } from '../../native/index.js';
import { root } from '../helpers.js';

const probe = native().ucx?.probe();
const missing = probe === undefined ? 'the native addon has no UCX binding (rebuild it)' : !probe.loaded && /cannot load/.test(probe.reason) ? probe.reason : null;
if (missing !== null) console.log(`ucx tests skipped: ${missing}`);

let dir = '';
let peer = '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mprun-ucx-'));
  peer = join(dir, 'peer.mjs');
  await build({
    entryPoints: [join(root, 'test/fixtures/ucx-peer.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: peer,
    logLevel: 'error',
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
});

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

interface Run {
  result: Record<string, unknown>;
  stderr: string;
}

function runPeer(role: string, cards: string, scenario: string, env: Record<string, string>, onLine?: (line: string) => void): Promise<Run & { code: number | null }> {
  return new Promise((resolve) => {
    const full: NodeJS.ProcessEnv = { ...process.env, MPRUN_NATIVE_PATH: nativePath ?? '', ...env };
    for (const [k, v] of Object.entries(env)) if (v === '') delete full[k]; // '' unsets
    const child = spawn(process.execPath, [peer, role, cards, scenario], {
      env: full,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      for (const line of d.toString().split('\n')) if (line !== '') onLine?.(line);
    });
    child.stderr.on('data', (d: Buffer) => void (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      resolve({ code, stderr: err, result: line === undefined ? {} : (JSON.parse(line.slice(7)) as Record<string, unknown>) });
    });
  });
}

async function pair(scenario: string, env: Record<string, string>, passiveRole = 'passive'): Promise<{ active: Run; passive: Run & { code: number | null } }> {
  const cards = mkdtempSync(join(dir, 'cards-'));
  const passive = runPeer(passiveRole, cards, scenario, env);
  const active = await runPeer('active', cards, scenario, env);
  return { active, passive: await passive };
}

const expectedAtomics = (big: boolean, unsigned: boolean): unknown[] => {
  const m3 = unsigned ? (big ? '18446744073709551613n' : 4294967293) : big ? '-3n' : -3;
  const v = (x: number): unknown => (big ? `${x}n` : x);
  return [v(0), v(5), v(5), v(15), m3, m3, v(7)];
};

function checkOps(r: Record<string, unknown>): void {
  expect(r.error).toBeUndefined();
  expect(r).toMatchObject({ putGetSmall: true, putGetLarge: true, fenceCompletes: true, fenceOrder: true, fenceAtomic: true, msgSmall: true, msgEmpty: true, msgLarge: true, msgOrder: true, remoteChecksumOk: true });
  expect(r.atomics).toEqual({ i32: expectedAtomics(false, false), u32: expectedAtomics(false, true), i64: expectedAtomics(true, false), u64: expectedAtomics(true, true) });
  expect(r.big).toBe(`${(1n << 62n) + 12345n}n`);
  expect(r.u32high).toBe(0xfffffff0);
  // conformance: what the endpoint advertises is what it does
  const caps = r.caps as { canMap: boolean; putCompleteOnReturn: boolean; progressWithoutTarget: boolean; latency: number; bandwidth: number };
  expect(caps.canMap).toBe(false);
  expect(caps.putCompleteOnReturn).toBe(false);
  expect(caps.progressWithoutTarget).toBe(r.progressThread);
  expect(caps.latency).toBeGreaterThan(0);
  expect(caps.bandwidth).toBeGreaterThan(0);
  expect(String(r.name)).toMatch(/^ucx\/[\w,-]+$/);
}

describe.skipIf(missing !== null)('UCX transport, two processes', () => {
  it('every operation over UCX_TLS=tcp (progress thread on)', async () => {
    const { active, passive } = await pair('ops', { UCX_TLS: 'tcp', MPRUN_TEST_THREAD: '1' });
    checkOps(active.result);
    expect(active.result.name).toBe('ucx/tcp');
    expect(active.result.putsAsMessages).toBe(true); // UCX's only network is TCP: small puts are our own messages
    expect(passive.code).toBe(0);
  });

  it('every operation over UCX_TLS=tcp without the progress thread', async () => {
    const { active, passive } = await pair('ops', { UCX_TLS: 'tcp', MPRUN_TEST_THREAD: '0' });
    checkOps(active.result);
    expect(active.result.progressThread).toBe(false);
    expect(passive.code).toBe(0);
  });

  it('every operation over UCX_TLS=tcp with UCP puts (MPRUN_UCX_PUTS=rma)', async () => {
    const { active, passive } = await pair('ops', { UCX_TLS: 'tcp', MPRUN_TEST_THREAD: '1', MPRUN_UCX_PUTS: 'rma' });
    checkOps(active.result);
    expect(active.result.putsAsMessages).toBe(false);
    expect(passive.code).toBe(0);
  });

  it('a put outside the target\'s registered memory is refused there and reported by the flush', async () => {
    const { active, passive } = await pair('refused', { UCX_TLS: 'tcp', MPRUN_TEST_THREAD: '1' });
    expect(active.result.putsAsMessages).toBe(true);
    expect(active.result.flush).toMatch(/^ERR_MPRUN_UCX: flush to rank 2 failed: a put was refused there \(outside its registered memory\): Address not valid/);
    expect(active.result.again).toBe(true);
    expect(active.result.after).toEqual([4, 3, 2, 1]);
    expect(passive.code).toBe(0);
  });

  it('every operation over the default transports', async () => {
    const env: Record<string, string> = { MPRUN_TEST_THREAD: '1' };
    const { active, passive } = await pair('ops', { ...env, UCX_TLS: '' });
    checkOps(active.result);
    expect((active.result.resources as string[]).length).toBeGreaterThan(0);
    expect(passive.code).toBe(0);
  });

  it('a fetch-add completes while the target computes (progress thread: progressWithoutTarget)', async () => {
    const { active } = await pair('busy-atomic', { UCX_TLS: 'tcp', MPRUN_TEST_THREAD: '1', MPRUN_TEST_BUSY_MS: '3000' }, 'busy');
    expect(active.result.progressThread).toBe(true);
    expect(active.result.ms as number).toBeLessThan(1500);
  });

  it("serves the target by polling when its progress thread cannot arm the worker's event fd, and says so", async () => {
    const { active, passive } = await pair('busy-atomic', { UCX_TLS: 'tcp', MPRUN_TEST_THREAD: '1', MPRUN_TEST_BUSY_MS: '3000', MPRUN_UCX_FAIL_ARM: '1' }, 'busy');
    expect(active.result.progressThread).toBe(true);
    expect(active.result.ms as number).toBeLessThan(1500);
    expect(passive.stderr).toMatch(/UCX progress thread cannot arm the worker's event fd \(ucp_worker_arm: .+\); it polls every millisecond instead/);
  });

  it('an unreachable peer and a damaged card: clear errors naming the rank, no hang', async () => {
    const cards = mkdtempSync(join(dir, 'cards-'));
    const gone = await runPeer('gone', cards, 'ops', { UCX_TLS: 'tcp' });
    expect(gone.code).toBe(0);
    const { result } = await runPeer('active', cards, 'unreachable', { UCX_TLS: 'tcp' });
    expect(result.get).toMatch(/^ERR_MPRUN_UCX: .*rank 1.*(unreachable|refused|timeout|reset)/i);
    expect(result.garbage).toMatch(/^ERR_MPRUN_UCX: rank 2's UCX card is damaged/);
  });

  it('a send that UCX fails after its call (the peer killed) fails naming the peer: never reported as sent', async () => {
    const cards = mkdtempSync(join(dir, 'cards-'));
    const env = { UCX_TLS: 'tcp', MPRUN_UCX_PROGRESS_THREAD: '0' };
    const passive = spawn(process.execPath, [peer, 'passive', cards, 'die'], { env: { ...process.env, MPRUN_NATIVE_PATH: nativePath ?? '', ...env }, stdio: 'ignore' });
    const { result } = await runPeer('active', cards, 'die-send', env, (line) => {
      if (line === 'READY') passive.kill('SIGKILL');
    });
    expect(result.send).toMatch(/^ERR_MPRUN_UCX: .*rank 1/);
  });

  it('a peer killed mid-operation: the operation fails naming it, no hang', async () => {
    const cards = mkdtempSync(join(dir, 'cards-'));
    const passive = spawn(process.execPath, [peer, 'passive', cards, 'die'], { env: { ...process.env, MPRUN_NATIVE_PATH: nativePath ?? '', UCX_TLS: 'tcp' }, stdio: 'ignore' });
    const t0 = Date.now();
    const { result } = await runPeer('active', cards, 'die', { UCX_TLS: 'tcp' }, (line) => {
      if (line === 'READY') passive.kill('SIGKILL');
    });
    expect(result.code).toBe('ERR_MPRUN_UCX');
    expect(result.message).toMatch(/rank 1/);
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it("UCX's TCP segments are 128K unless the user sets one (then mprun sets neither)", async () => {
    const unset = { UCX_TCP_TX_SEG_SIZE: '', UCX_TCP_RX_SEG_SIZE: '' };
    const dflt = await runPeer('probe', dir, '', unset);
    expect(dflt.result).toMatchObject({ open: 'ok', seg: ['128K', '128K'] });
    const mine = await runPeer('probe', dir, '', { ...unset, UCX_TCP_RX_SEG_SIZE: '1M' });
    expect(mine.result).toMatchObject({ open: 'ok', seg: [null, '1M'] });
  });

  it('a UCX library of the wrong version or none: query() says why, open() throws ERR_MPRUN_UCX', async () => {
    const lib = join(dir, 'libucp-old.so');
    const src = join(dir, 'old.c');
    writeFileSync(src, 'void ucp_get_version(unsigned *a, unsigned *b, unsigned *c) { *a = 1; *b = 8; *c = 0; }\n');
    const cc = spawnSync('cc', ['-shared', '-fPIC', '-o', lib, src]);
    expect(cc.status).toBe(0);
    const old = await runPeer('probe', dir, '', { MPRUN_UCX_LIB: lib });
    const q = old.result.query as { available: boolean; reason: string; version: string };
    expect(q.available).toBe(false);
    expect(q.version).toBe('1.8.0');
    expect(q.reason).toMatch(/UCX 1\.8\.0 at .*libucp-old\.so is too old: mprun needs >= 1\.9/);
    expect(old.result.open).toMatch(/^ERR_MPRUN_UCX: UCX is not usable: UCX 1\.8\.0/);
    const none = await runPeer('probe', dir, '', { MPRUN_UCX_LIB: join(dir, 'no-such-libucp.so') });
    expect((none.result.query as { reason: string }).reason).toMatch(/cannot load .*no-such-libucp\.so/);
    const noTls = await runPeer('probe', dir, '', { UCX_TLS: 'no_such_transport' });
    expect((noTls.result.query as { available: boolean }).available).toBe(false);
  });
});
