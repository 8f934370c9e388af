/**
 * Compiles an app once per job (not once per rank) with esbuild.
 *
 * For ranks started by mprun's agent (`{ rank: true }`) the result is one
 * file, the *rank bundle*: the rank's prelude (rank-prelude.ts), mprun's
 * runtime and the app's own modules together, so that a rank loads one
 * module instead of about ninety (most of a rank's start-up CPU was Node's
 * ES module loader: resolving, reading and compiling each file). The native
 * addon, the checkpoint worker and the app's packages stay external; mprun's
 * modules keep their own `import.meta.url`, so that they find the addon and
 * their worker files where mprun is installed. The bundle's source map is a
 * file beside it (`.rank.mjs.map`), read only when a stack is printed
 * (stack-map.ts): Node's `--enable-source-maps` parses every map at load, and
 * inlined, the map was 45% of the bundle's bytes, which every rank read,
 * decoded and scanned (7-8 ms of a rank's start here).
 *
 * Otherwise (`mprun --direct`, which runs the app in the process that has
 * loaded mprun already) the app's modules are bundled and mprun stays
 * external, so that there is one runtime in the process.
 *
 * Bundles are cached per user (~/.cache/mprun): a job whose inputs (every
 * bundled file, the app's package.json and tsconfig.json) are unchanged
 * reuses its bundle without starting esbuild.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { homedir } from 'node:os';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Metafile, OnResolveResult, Plugin } from 'esbuild';
import { packageRoot } from '../native/index.js';
import { RANK_BUNDLE_SUFFIX } from './stack-map.js';

const builtins = new Set(builtinModules);
const RUNTIME_DIRS = ['core', 'runtime', 'transports', 'native', 'launcher', 'bench'];

/** The name a rank bundle ends with (the agent starts it directly, without rank-main.js). */
export { RANK_BUNDLE_SUFFIX };

/** Packages of mprun's own that stay outside a rank bundle: loaded only when used, or run as worker files. */
const KEEP_EXTERNAL = new Set(['piscina', 'esbuild', 'typescript']);

/**
 * The compiled module of one of mprun's own TypeScript sources, so that an app
 * importing them by path shares the runtime every rank loads (one instance,
 * and the addon found from dist/), rather than a second copy.
 */
function compiledSibling(path: string): string | null {
  const rel = relative(packageRoot, path);
  if (rel.startsWith('..') || !RUNTIME_DIRS.includes(rel.split(sep)[0]!) || !rel.endsWith('.ts')) return null;
  const js = join(packageRoot, 'dist', rel.replace(/\.ts$/, '.js'));
  return existsSync(js) ? js : null;
}

/**
 * `mprun` or `mprun/SUBPATH` as this package exports it (its package.json
 * "exports"), so that an app in a project of its own, with or without mprun
 * installed, imports the runtime that runs it.
 */
function resolveSelf(specifier: string): string | null {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { exports?: Record<string, string | { default?: string }> };
  const target = pkg.exports?.[specifier === 'mprun' ? '.' : `./${specifier.slice('mprun/'.length)}`];
  const file = typeof target === 'string' ? target : target?.default;
  return file === undefined ? null : resolve(packageRoot, file);
}

/** Whether `path` is mprun's own code or one of its installed dependencies. */
function isMprunFile(path: string): boolean {
  const rel = relative(packageRoot, path);
  return !rel.startsWith('..') && (rel.startsWith(`dist${sep}`) || rel.startsWith(`node_modules${sep}`));
}

/**
 * How mprun's own modules are bundled: 'app' leaves them external (one runtime
 * in a process that has loaded it already); 'rank' bundles them into a file
 * outside the package (the cache), so the packages they use are referred to
 * by absolute path and their import.meta.url becomes the file's own URL;
 * 'cli' bundles them into a file inside the package (dist/), so packages
 * stay bare and import.meta.url is the file's URL relative to the bundle's.
 */
/** The expression replaced, spelt so that this file's own text does not contain it (it is bundled too). */
const META_URL = ['import', 'meta', 'url'].join('.');

export type BundleMode = 'app' | 'rank' | 'cli';

/** Where the bundles' builtin modules resolve to (see resolvePlugin). */
export const BUILTIN_NAMESPACE = 'mprun-builtin';
/** The first Node.js with process.getBuiltinModule, which the bundles use (package.json "engines"). */
export const MIN_NODE = '20.16';

/** The source of the module that stands for Node's module `name` in a bundle. */
function builtinModuleSource(name: string): string {
  const id = JSON.stringify(`node:${name}`);
  const names = Object.keys(process.getBuiltinModule(`node:${name}`) as object).filter((k) => k !== 'default' && /^[A-Za-z_$][\w$]*$/.test(k));
  return [
    `if (process.getBuiltinModule === undefined) throw new Error('mprun needs Node.js ${MIN_NODE} or newer (process.getBuiltinModule); this is ' + process.version);`,
    `const m = process.getBuiltinModule(${id});`,
    'const get = (k) => m[k];',
    'export default m;',
    ...names.map((k) => `export const ${k} = /* @__PURE__ */ get(${JSON.stringify(k)});`),
  ].join('\n');
}

export function resolvePlugin(mode: BundleMode, outfile = ''): Plugin {
  const bundleSelf = mode !== 'app';
  return {
    name: 'mprun-resolve',
    setup(b) {
      b.onResolve({ filter: /.*/ }, async (args): Promise<OnResolveResult | undefined> => {
        if (args.pluginData === 'mprun-resolving' || args.kind === 'entry-point') return undefined;
        const bare = !/^[./]/.test(args.path);
        if (bare && (args.path.startsWith('node:') || builtins.has(args.path) || builtins.has(args.path.split('/')[0]!))) {
          // mprun's own imports of Node's modules, in a bundle, are taken with process.getBuiltinModule
          // rather than as ES modules: the ES module facade of a builtin reads every export, so that
          // `node:process` loads the diagnostic report and `node:fs` the file streams (13 ms of CPU
          // per process for the ten that a rank imports, on every rank and in mprun itself).
          // (A dynamic import() stays Node's own: its namespace object would read every export, getters too.)
          if (bundleSelf && isMprunFile(args.importer) && args.kind !== 'dynamic-import') return { path: args.path.replace(/^node:/, ''), namespace: BUILTIN_NAMESPACE };
          return { path: args.path, external: true };
        }
        // 'mprun' and 'mprun/...' are the running mprun, wherever the app lives:
        // its launcher and its runtime speak one protocol.
        if (bare && (args.path === 'mprun' || args.path.startsWith('mprun/'))) {
          const self = resolveSelf(args.path);
          if (self === null) return { errors: [{ text: `Could not resolve "${args.path}": mprun (${packageRoot}) exports 'mprun', 'mprun/xpmem' and 'mprun/rpmem'` }] };
          return { path: self, external: !bundleSelf };
        }
        const fromMprun = bundleSelf && isMprunFile(args.importer);
        if (fromMprun && mode === 'cli' && bare && KEEP_EXTERNAL.has(args.path.split('/')[0]!)) return { path: args.path, external: true };
        const r = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: 'mprun-resolving' });
        if (r.errors.length > 0) return { errors: r.errors };
        if (fromMprun) {
          if (bare && KEEP_EXTERNAL.has(args.path.split('/')[0]!)) return { path: r.path, external: true };
          // msgpackr's Node entry loads the msgpackr-extract addon (16 ms per process), which
          // only speeds up decoding strings in large messages: bundles use its JavaScript build.
          if (args.path === 'msgpackr' && basename(r.path) === 'node-index.js') return { path: join(dirname(r.path), 'index.js') };
          return { path: r.path, external: r.external };
        }
        const compiled = compiledSibling(r.path);
        if (compiled !== null) return { path: compiled, external: !bundleSelf };
        // The app's packages stay external, at their absolute paths; its own files are bundled.
        return bare ? { path: r.path, external: true } : undefined;
      });
      if (!bundleSelf) return;
      // An ES module per builtin: its exports as Node's own facade has them (the module object's keys),
      // each read by a pure call, so that esbuild keeps only those the bundle uses; esbuild's
      // CommonJS interop would copy every key into an object of getters at each importing module.
      b.onLoad({ filter: /.*/, namespace: BUILTIN_NAMESPACE }, (args) => ({ contents: builtinModuleSource(args.path), loader: 'js' }));
      // mprun's modules keep their own import.meta.url (the addon, worker files and
      // the hang reports' own-code folders are found from it).
      b.onLoad({ filter: /\.(m?js|cjs)$/ }, (args) => {
        if (!isMprunFile(args.path)) return undefined;
        const text = readFileSync(args.path, 'utf8');
        if (!text.includes(META_URL)) return undefined;
        const url =
          mode === 'rank'
            ? JSON.stringify(pathToFileURL(args.path).href)
            : `new URL(${JSON.stringify(relative(dirname(outfile), args.path).split(sep).join('/'))}, ${META_URL}).href`;
        return { contents: text.replaceAll(META_URL, url), loader: 'js', resolveDir: dirname(args.path) };
      });
    },
  };
}

/**
 * Whether the app goes through esbuild: TypeScript always; JavaScript when
 * 'mprun' does not resolve from its folder (an app outside any project that
 * has mprun), so that its `import 'mprun'` binds to the running mprun.
 */
export function needsCompile(app: string): boolean {
  if (/\.(ts|mts|cts|tsx)$/.test(app)) return true;
  try {
    createRequire(app).resolve('mprun');
    return false;
  } catch {
    return true;
  }
}

export interface CompileOptions {
  /** A rank bundle (prelude, runtime and app in one file), else the app with mprun external. */
  rank?: boolean;
  /** Where bundles are cached; null: no cache. Default: $MPRUN_CACHE_DIR, $XDG_CACHE_HOME/mprun or ~/.cache/mprun. */
  cacheDir?: string | null;
}

/** What a cached bundle was made from: each input's size and modification time. */
interface CacheRecord {
  inputs: Array<[path: string, size: number, mtimeMs: number]>;
}

/**
 * A 64-bit FNV-1a hash of `text` as 16 hexadecimal digits: the name of a cached bundle (a
 * collision among one user's apps is negligible). Not node:crypto: loading it costs 9 ms of
 * mprun's start, which every job waits for.
 */
export function fnv1a64(text: string): string {
  const prime = 0x100000001b3n;
  let h = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(text)) h = BigInt.asUintN(64, (h ^ BigInt(byte)) * prime);
  return h.toString(16).padStart(16, '0');
}

function defaultCacheDir(): string | null {
  if (process.env.MPRUN_NO_COMPILE_CACHE === '1') return null;
  if (process.env.MPRUN_CACHE_DIR) return process.env.MPRUN_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'mprun');
}

function stamp(path: string): [string, number, number] | null {
  try {
    const st = statSync(path);
    return [path, st.size, st.mtimeMs];
  } catch {
    return null;
  }
}

/** The app's package.json and tsconfig.json (nearest, up to the root): esbuild reads them. */
function configFiles(app: string): string[] {
  const found: string[] = [];
  for (const name of ['package.json', 'tsconfig.json']) {
    for (let d = dirname(app); ; d = dirname(d)) {
      if (existsSync(join(d, name))) {
        found.push(join(d, name));
        break;
      }
      if (dirname(d) === d) break;
    }
  }
  return found;
}

function fresh(record: CacheRecord): boolean {
  return record.inputs.every(([path, size, mtimeMs]) => {
    const s = stamp(path);
    return s !== null && s[1] === size && s[2] === mtimeMs;
  });
}

/** Compiles `app` into `outDir` (or takes it from the cache); returns the path of the module to run. */
export async function compileApp(app: string, outDir: string, opts: CompileOptions = {}): Promise<string> {
  app = resolve(app);
  const rank = opts.rank === true;
  const name = basename(app).replace(/\.[^.]+$/, '');
  const cacheDir = opts.cacheDir === undefined ? defaultCacheDir() : opts.cacheDir;
  let outfile = join(outDir, rank ? `${name}${RANK_BUNDLE_SUFFIX}` : `${name}.mjs`);
  let recordFile: string | null = null;
  if (cacheDir !== null) {
    // 'app-by-import': bundles made before the app was imported as a function of its own (and before this file was an input) are not reused.
    const key = fnv1a64(JSON.stringify([app, rank, packageRoot, process.version, 'app-by-import']));
    const cached = join(cacheDir, `${name}.${key}${rank ? RANK_BUNDLE_SUFFIX : '.mjs'}`);
    recordFile = `${cached}.json`;
    try {
      const record = JSON.parse(readFileSync(recordFile, 'utf8')) as CacheRecord;
      if (existsSync(cached) && fresh(record)) return cached;
    } catch {
      // not cached yet, or unreadable: compile
    }
    try {
      mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
      chmodSync(cacheDir, 0o700);
      outfile = cached;
    } catch {
      recordFile = null; // no cache here: compile into the job's folder
    }
  }

  const started = Date.now();
  const { build } = await import('esbuild');
  const entry = rank
    ? {
        stdin: {
          // The prelude first, so the rank is set up before the app's first line. The app by
          // import(), which esbuild bundles as a function of its own (`__esm`): the app's top level,
          // where users write their loops, is not the body of the whole bundle (every module's top
          // level hoisted into one function), which V8 compiled twice in a cold loop at 20-30 ms a
          // time, stalling the rank's peers (README, "Cold and steady").
          contents: `import ${JSON.stringify(join(packageRoot, 'dist', 'launcher', 'rank-prelude.js'))};\nawait import(${JSON.stringify(app)});\n`,
          resolveDir: dirname(app),
          sourcefile: `${name}.rank-entry.js`,
          loader: 'js' as const,
        },
      }
    : { entryPoints: [app] };
  // Written next to its final name, then renamed: jobs that compile the same app at once never read half a file.
  const tmp = `${outfile}.${process.pid}.tmp`;
  const result = await build({
    ...entry,
    outfile: tmp,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: rank ? 'external' : 'inline',
    sourcesContent: false,
    metafile: true,
    logLevel: 'silent',
    conditions: ['import', 'node'],
    plugins: [resolvePlugin(rank ? 'rank' : 'app')],
  }).catch((e: { errors?: Array<{ text: string; location?: { file: string; line: number; column: number } | null }> }) => e);
  if ('errors' in result && result.errors !== undefined && result.errors.length > 0) {
    const lines = result.errors.map((m) => (m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ${m.text}` : m.text));
    throw new Error(`cannot compile ${app}:\n  ${lines.join('\n  ')}`);
  }
  if (rank) renameSync(`${tmp}.map`, `${outfile}.map`); // before the bundle: whoever finds the bundle finds its map
  renameSync(tmp, outfile);
  if (recordFile !== null && 'metafile' in result && result.metafile !== undefined) {
    // This file too: how bundles are made is an input of each (a new mprun recompiles them).
    const inputs = Object.keys((result.metafile as Metafile).inputs)
      .map((p) => resolve(p))
      .concat(configFiles(app), [fileURLToPath(import.meta.url)]);
    const stamps = inputs.map(stamp).filter((s): s is [string, number, number] => s !== null);
    // A file saved while esbuild read it may be in the bundle as it was before: cache only inputs older than the build.
    if (stamps.every(([, , mtimeMs]) => mtimeMs < started - 1000)) {
      writeFileSync(`${recordFile}.${process.pid}.tmp`, JSON.stringify({ inputs: stamps } satisfies CacheRecord));
      renameSync(`${recordFile}.${process.pid}.tmp`, recordFile);
    }
  }
  return outfile;
}
