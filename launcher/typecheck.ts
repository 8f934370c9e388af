/**
 * `mprun --typecheck`: esbuild strips types without checking them, so a type
 * error runs anyway; with --typecheck, mprun first runs the TypeScript
 * compiler (the app's project's, else the one next to mprun) over the app, as
 * `tsc --noEmit` would with the project's tsconfig.json, and with 'mprun' and
 * 'mprun/*' resolvable to this package's types when the project does not
 * install mprun itself. Diagnostics are printed and no rank starts.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as TS from 'typescript';
import { packageRoot } from '../native/index.js';

export class TypecheckUnavailable extends Error {}

/** The typescript package's main module: the app's project's first, else the one beside mprun. */
export function findTypeScript(appDir: string): string | null {
  for (const from of [join(appDir, 'noop.js'), join(packageRoot, 'package.json')]) {
    try {
      return createRequire(from).resolve('typescript');
    } catch {
      // not there
    }
  }
  return null;
}

/** This package's exported subpaths ('mprun', 'mprun/xpmem', ...) and their declaration files. */
function ownTypes(): Record<string, string[]> {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { exports?: Record<string, { types?: string } | string> };
  const paths: Record<string, string[]> = {};
  for (const [sub, target] of Object.entries(pkg.exports ?? {})) {
    if (typeof target !== 'object' || target.types === undefined) continue;
    paths[sub === '.' ? 'mprun' : `mprun/${sub.replace(/^\.\//, '')}`] = [resolve(packageRoot, target.types)];
  }
  return paths;
}

/**
 * Type-checks `app`; resolves to the diagnostics text ('' when clean).
 * Throws TypecheckUnavailable when TypeScript is not installed.
 */
export async function typecheckApp(app: string, color = false): Promise<{ errors: number; text: string }> {
  const file = resolve(app);
  const dir = dirname(file);
  const where = findTypeScript(dir);
  if (where === null) {
    throw new TypecheckUnavailable(
      '--typecheck needs TypeScript, which is not installed for this app: run `npm install --save-dev typescript` in its project (without --typecheck the app runs unchecked: esbuild strips types)',
    );
  }
  const mod = (await import(pathToFileURL(where).href)) as { default?: typeof TS } & typeof TS;
  const ts = mod.default ?? mod;
  const diagnostics: TS.Diagnostic[] = [];
  let options: TS.CompilerOptions;
  const config = ts.findConfigFile(dir, ts.sys.fileExists);
  if (config !== undefined) {
    const host: TS.ParseConfigFileHost = { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => diagnostics.push(d) };
    const parsed = ts.getParsedCommandLineOfConfigFile(config, {}, host);
    options = parsed?.options ?? {};
    diagnostics.push(...(parsed?.errors ?? []).filter((d) => d.code !== 18003)); // "no inputs": the app is the input
  } else {
    // As esbuild sees the app: ES modules, bundler resolution, top-level await.
    options = {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      allowImportingTsExtensions: true,
      strict: true,
    };
  }
  options = { ...options, noEmit: true, skipLibCheck: true };
  delete options.emitDeclarationOnly;
  delete options.declaration;
  delete options.composite;
  // 'mprun' from a project that does not install it: this package's types.
  if (ts.resolveModuleName('mprun', file, options, ts.sys).resolvedModule === undefined) {
    options.paths = { ...ownTypes(), ...options.paths };
  }
  const program = ts.createProgram([file], options);
  diagnostics.push(...ts.getPreEmitDiagnostics(program));
  const errors = diagnostics.filter((d) => d.category === ts.DiagnosticCategory.Error).length;
  const fmtHost: TS.FormatDiagnosticsHost = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => process.cwd(), getNewLine: () => '\n' };
  const text = diagnostics.length === 0 ? '' : color ? ts.formatDiagnosticsWithColorAndContext(diagnostics, fmtHost) : ts.formatDiagnostics(diagnostics, fmtHost);
  return { errors, text };
}
