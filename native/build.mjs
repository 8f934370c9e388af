// `npm install` runs this: it checks for what node-gyp needs and says what is
// missing (instead of node-gyp's stack trace), then builds the addon.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const missing = [];
for (const [tool, pkg] of [['python3', 'python3'], ['make', 'make'], ['g++', 'g++']]) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) missing.push(`${tool} (Debian: apt-get install ${pkg})`);
}
const nodedir = process.env.npm_config_nodedir;
if (nodedir && !existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) {
  missing.push(`Node.js headers under ${nodedir}/include/node (npm_config_nodedir points there)`);
}
if (missing.length > 0) {
  console.error(`mprun: cannot build the native addon; missing:\n  ${missing.join('\n  ')}`);
  process.exit(1);
}
const r = spawnSync('node-gyp', ['rebuild'], { stdio: 'inherit', shell: false });
if (r.error) {
  console.error(`mprun: cannot run node-gyp (${r.error.message}); it comes with npm`);
  process.exit(1);
}
if (r.status !== 0) console.error('mprun: the native addon failed to build; the compiler output above says why');
process.exit(r.status ?? 1);
