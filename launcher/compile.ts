/**
 * Compiles a TypeScript app once per job (not once per rank) with esbuild:
 * the app's own modules are bundled into one ES module with an inline source
 * map (stack traces point at the .ts lines); packages stay external, resolved
 * from the app's directory to absolute paths so that the bundle can live in
 * the job's private directory.
 */
import { builtinModules } from 'node:module';
import { basename, join } from 'node:path';
import { build, type Plugin } from 'esbuild';

const builtins = new Set(builtinModules);

const externalizePackages: Plugin = {
  name: 'mprun-externalize-packages',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, async (args) => {
      if (args.pluginData === 'mprun-resolving') return undefined;
      if (args.path.startsWith('node:') || builtins.has(args.path) || builtins.has(args.path.split('/')[0]!)) return { path: args.path, external: true };
      const r = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: 'mprun-resolving' });
      if (r.errors.length > 0) return { errors: r.errors };
      return { path: r.path, external: true };
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
