/**
 * Compiles a TypeScript app once per job (not once per rank) with esbuild:
 * the app's own modules are bundled into one ES module with an inline source
 * map (stack traces point at the .ts lines); packages stay external, resolved
 * from the app's directory to absolute paths so that the bundle can live in
 * the job's private directory.
 */
import { existsSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { basename, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type OnResolveResult, type Plugin } from 'esbuild';
import { packageRoot } from '../native/index.js';

const builtins = new Set(builtinModules);
const RUNTIME_DIRS = ['core', 'runtime', 'transports', 'native', 'launcher', 'bench'];

/**
 * The compiled module of one of mprun's own TypeScript sources, so that an app
 * importing them by path shares the runtime every rank loads (one instance,
 * and the addon found from dist/), rather than bundling a second copy.
 */
function compiledSibling(path: string): string | null {
  const rel = relative(packageRoot, path);
  if (rel.startsWith('..') || !RUNTIME_DIRS.includes(rel.split(sep)[0]!) || !rel.endsWith('.ts')) return null;
  const js = join(packageRoot, 'dist', rel.replace(/\.ts$/, '.js'));
  return existsSync(js) ? js : null;
}

/**
 * `mprun` or `mprun/SUBPATH` as this package exports it (its own package.json
 * "exports", by self-reference from this module), so that an app in a project
 * of its own, with or without mprun installed, imports the runtime that runs it.
 */
function resolveSelf(specifier: string): OnResolveResult {
  try {
    return { path: fileURLToPath(import.meta.resolve(specifier)), external: true };
  } catch {
    return { errors: [{ text: `Could not resolve "${specifier}": mprun (${packageRoot}) exports 'mprun', 'mprun/xpmem' and 'mprun/rpmem'` }] };
  }
}

const externalizePackages: Plugin = {
  name: 'mprun-externalize-packages',
  setup(b) {
    b.onResolve({ filter: /.*/ }, async (args) => {
      if (args.pluginData === 'mprun-resolving' || args.kind === 'entry-point') return undefined;
      const bare = !/^[./]/.test(args.path);
      if (bare && (args.path.startsWith('node:') || builtins.has(args.path) || builtins.has(args.path.split('/')[0]!))) return { path: args.path, external: true };
      // 'mprun' and 'mprun/...' are the running mprun, wherever the app lives:
      // its launcher and its runtime speak one protocol, and ranks load this one.
      if (bare && (args.path === 'mprun' || args.path.startsWith('mprun/'))) return resolveSelf(args.path);
      const r = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: 'mprun-resolving' });
      if (r.errors.length > 0) return { errors: r.errors };
      const compiled = compiledSibling(r.path);
      if (compiled !== null) return { path: compiled, external: true };
      // Packages stay external, at their absolute paths; the app's own files are bundled.
      return bare ? { path: r.path, external: true } : undefined;
    });
  },
};

export function needsCompile(app: string): boolean {
  return /\.(ts|mts|cts|tsx)$/.test(app);
}

/** Compiles `app` into `outDir`; returns the path of the module to run. */
export async function compileApp(app: string, outDir: string): Promise<string> {
  const outfile = join(outDir, `${basename(app).replace(/\.[^.]+$/, '')}.mjs`);
  const result = await build({
    entryPoints: [app],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'inline',
    logLevel: 'silent',
    conditions: ['import', 'node'],
    plugins: [externalizePackages],
  }).catch((e: { errors?: Array<{ text: string; location?: { file: string; line: number; column: number } | null }> }) => e);
  if ('errors' in result && result.errors !== undefined && result.errors.length > 0) {
    const lines = result.errors.map((m) => (m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ${m.text}` : m.text));
    throw new Error(`cannot compile ${app}:\n  ${lines.join('\n  ')}`);
  }
  return outfile;
}
