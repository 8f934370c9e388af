import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from './index.js';

describe('the addon object', () => {
  it('has fast properties, and so have its groups of functions (ucx, pmix, ...), so optimized code calls its functions without a dictionary lookup', () => {
    // Node-API's own exports object is in dictionary mode (V8's %HasFastProperties says false);
    // native() hands out a copy that is not. Checked in a child: natives syntax is a V8 flag.
    const index = join(packageRoot, 'dist', 'native', 'index.js');
    const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', `const m = await import(${JSON.stringify(index)}); const n = m.native(); console.log(%HasFastProperties(n) && Object.values(n).every((v) => typeof v !== 'object' || v === null || %HasFastProperties(v)), typeof n.queueSendStaged, Object.keys(n).length);`], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const [fast, kind, count] = r.stdout.trim().split(' ');
    expect(kind).toBe('function');
    expect(Number(count)).toBeGreaterThan(40);
    expect(fast).toBe('true');
  });
});
