import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
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
