import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { socketFd } from '../core/wire.js';
import { describe, expect, it } from 'vitest';
import { native, packageRoot } from './index.js';

describe('the addon object', () => {
  it('has fast properties, and so have its groups of functions (ucx, pmix, ...), so optimized code calls its functions without a dictionary lookup', () => {
    // Node-API's own exports object is in dictionary mode (V8's %HasFastProperties says false);
    // native() hands out a copy that is not. Checked in a child: natives syntax is a V8 flag.
    const index = join(packageRoot, 'dist', 'native', 'index.js');
    const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', `const m = await import(${JSON.stringify(index)}); const n = m.native(); console.log(%HasFastProperties(n) && Object.values(n).every((v) => typeof v !== 'object' || v === null || %HasFastProperties(v)), typeof n.queueSendEager, Object.keys(n).length);`], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const [fast, kind, count] = r.stdout.trim().split(' ');
    expect(kind).toBe('function');
    expect(Number(count)).toBeGreaterThan(40);
    expect(fast).toBe('true');
  });
});

describe('nowMs', () => {
  it('is a monotonic clock in milliseconds (the waits\' deadlines)', async () => {
    const n = native();
    const a = n.nowMs();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 30));
    const b = n.nowMs();
    const elapsed = performance.now() - t0;
    expect(b).toBeGreaterThan(a);
    expect(Math.abs(b - a - elapsed)).toBeLessThan(5);
    let last = n.nowMs();
    for (let i = 0; i < 10000; i++) {
      const t = n.nowMs();
      expect(t).toBeGreaterThanOrEqual(last);
      last = t;
    }
  });
});

describe('tcpDeadPeer', () => {
  // A peer host that vanishes without FIN or RST: a listener in a network namespace whose link
  // is then taken down. Needs root and iproute2 (CI has both).
  const why = process.getuid?.() !== 0 ? 'needs root (a network namespace)' : spawnSync('ip', ['-V']).status !== 0 ? 'needs iproute2 (ip)' : null;
  if (why !== null) console.log(`tcpDeadPeer test skipped: ${why}`);
  it.skipIf(why !== null)('ends a connection to a vanished host with ETIMEDOUT within its time, idle or with data unacknowledged', async () => {
    const ns = `mprun-dp-${process.pid}`;
    const host = `mpdp${process.pid % 100000}a`;
    const peer = `mpdp${process.pid % 100000}b`;
    const sh = (...args: string[]): void => {
      const r = spawnSync('ip', args, { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
    };
    sh('netns', 'add', ns);
    let listener: ChildProcess | null = null;
    try {
      sh('link', 'add', host, 'type', 'veth', 'peer', 'name', peer);
      sh('link', 'set', peer, 'netns', ns);
      sh('addr', 'add', '10.231.7.1/24', 'dev', host);
      sh('link', 'set', host, 'up');
      sh('-n', ns, 'addr', 'add', '10.231.7.2/24', 'dev', peer);
      sh('-n', ns, 'link', 'set', peer, 'up');
      sh('-n', ns, 'link', 'set', 'lo', 'up');
      listener = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', "require('net').createServer(() => {}).listen(7007, '10.231.7.2', () => console.log('up'))"], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => listener!.stdout!.once('data', () => resolve()));
      for (const busy of [false, true]) {
        const s = connect(7007, '10.231.7.2');
        await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
        native().tcpDeadPeer(socketFd(s)!, 3);
        sh('link', 'set', host, 'down'); // gone: nothing answers, nothing refuses
        const t0 = Date.now();
        if (busy) s.write(Buffer.alloc(1000));
        const err = await new Promise<NodeJS.ErrnoException>((resolve) => s.once('error', resolve));
        const ms = Date.now() - t0;
        expect(err.code, `busy ${busy}`).toBe('ETIMEDOUT');
        expect(ms, `busy ${busy}`).toBeLessThan(8000);
        s.destroy();
        sh('link', 'set', host, 'up');
      }
    } finally {
      listener?.kill('SIGKILL');
      spawnSync('ip', ['link', 'del', host]);
      spawnSync('ip', ['netns', 'del', ns]);
    }
  }, 30_000);
});
