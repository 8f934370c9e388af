/**
 * `node dist/launcher/bundle.js`: bundles mprun's command (dist/launcher/cli.js
 * and the ~80 modules it imports) into one file, dist/mprun-cli.mjs, with the
 * list of its inputs in dist/mprun-cli.json. bin/mprun.js loads the bundle
 * when no input is newer than it (else the modules, as compiled by tsc, and it
 * starts this in the background to bundle them again): Node loads one file
 * much faster than eighty, and mprun's own start is on the path of every
 * job's start (issue 10). Run by `npm run build` and `prepare`.
 */
import { renameSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageRoot } from '../native/index.js';
import { BUILTIN_NAMESPACE, resolvePlugin } from './compile.js';

export const CLI_BUNDLE = join(packageRoot, 'dist', 'mprun-cli.mjs');

export async function bundleCli(): Promise<{ file: string; inputs: number; bytes: number }> {
  const { build } = await import('esbuild');
  // Written aside, then renamed: an mprun starting meanwhile loads the old bundle or the new, whole.
  const tmp = `${CLI_BUNDLE}.${process.pid}.tmp`;
  const result = await build({
    entryPoints: [join(packageRoot, 'dist', 'launcher', 'cli.js')],
    outfile: tmp,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    metafile: true,
    logLevel: 'warning',
    conditions: ['import', 'node'],
    plugins: [resolvePlugin('cli', CLI_BUNDLE)],
  });
  // Files only: the builtins' one-line modules (compile.ts) are inputs of another namespace, spelt 'namespace:name'.
  const inputs = Object.keys(result.metafile.inputs)
    .filter((p) => !p.startsWith(`${BUILTIN_NAMESPACE}:`))
    .map((p) => relative(packageRoot, join(process.cwd(), p)));
  const record = join(packageRoot, 'dist', 'mprun-cli.json');
  writeFileSync(`${record}.${process.pid}.tmp`, JSON.stringify({ inputs }));
  renameSync(tmp, CLI_BUNDLE);
  renameSync(`${record}.${process.pid}.tmp`, record);
  return { file: CLI_BUNDLE, inputs: inputs.length, bytes: statSync(CLI_BUNDLE).size };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await bundleCli();
  if (!process.argv.includes('--quiet')) process.stdout.write(`mprun: bundled the command into ${relative(process.cwd(), r.file)} (${r.inputs} modules, ${(r.bytes / 1024).toFixed(0)} KiB)\n`);
}
