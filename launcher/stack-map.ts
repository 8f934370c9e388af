/**
 * Stack traces of a rank bundle (compile.ts) in the app's and mprun's own
 * sources, without Node's --enable-source-maps (which reads and parses every
 * module's source map when the module loads: a cost at every rank's start).
 * Instead, V8's Error.prepareStackTrace hook maps the frames that lie in a
 * rank bundle when a stack is first read, and the bundle's source map (a
 * file beside it, compile.ts) is parsed then, once. Other frames are printed
 * as Node prints them.
 */
import { readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The name a rank bundle ends with. */
export const RANK_BUNDLE_SUFFIX = '.rank.mjs';

const maps = new Map<string, SourceMap | null>();

function mapOf(path: string): SourceMap | null {
  let map = maps.get(path);
  if (map !== undefined) return map;
  map = null;
  try {
    map = new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8')) as ConstructorParameters<typeof SourceMap>[0]);
  } catch {
    map = null;
  }
  maps.set(path, map);
  return map;
}

/** `path:line:column` (1-based) in the source that a rank bundle's position came from, or null. */
export function mapPosition(file: string, line: number, column: number): string | null {
  if (!file.endsWith(RANK_BUNDLE_SUFFIX)) return null;
  const path = file.startsWith('file://') ? fileURLToPath(file) : file;
  const entry = mapOf(path)?.findEntry(line - 1, column - 1) as { originalSource?: string; originalLine?: number; originalColumn?: number } | undefined;
  if (entry?.originalSource === undefined || entry.originalLine === undefined || entry.originalColumn === undefined) return null;
  const source = entry.originalSource.startsWith('file://') ? fileURLToPath(entry.originalSource) : resolve(dirname(path), entry.originalSource);
  return `${source}:${entry.originalLine + 1}:${entry.originalColumn + 1}`;
}

/** The name of the rank bundle's entry (compile.ts): its one frame, `await import(app)`, is mprun's, not the program's. */
const RANK_ENTRY = '.rank-entry.js';

/** A frame's mapped text, or null for a frame not to print. */
function frame(site: NodeJS.CallSite): NodeJS.CallSite | { toString(): string } | null {
  const file = site.getFileName();
  const line = site.getLineNumber();
  const column = site.getColumnNumber();
  if (file === undefined || file === null || line === null || column === null) return site;
  const mapped = mapPosition(file, line, column);
  if (mapped === null) return site;
  const source = mapped.replace(/:\d+:\d+$/, '');
  if (source.endsWith(RANK_ENTRY)) return null;
  // The app's top level runs as a function esbuild names after the module's path: print it as Node prints a module's top level.
  const name = site.getFunctionName();
  const topLevel = name !== null && /[/.]/.test(name) && name.endsWith(basename(source));
  const text = topLevel ? `${site.isAsync() ? 'async ' : ''}${mapped}` : String(site).replace(`${file}:${line}:${column}`, mapped);
  return { toString: () => text };
}

/**
 * Installs the mapping in front of Node's own formatting (which joins the
 * frames' texts under the error's): frames in a rank bundle are handed to it
 * with their mapped text.
 */
export function mapStackTraces(): void {
  if ((process as { sourceMapsEnabled?: boolean }).sourceMapsEnabled === true) return; // Node maps them itself
  const format = Error.prepareStackTrace;
  Error.prepareStackTrace = (error: Error, trace: NodeJS.CallSite[]): unknown => {
    const frames = trace.map(frame).filter((f) => f !== null) as NodeJS.CallSite[];
    if (format !== undefined) return format(error, frames);
    let head: string;
    try {
      head = Error.prototype.toString.call(error);
    } catch {
      head = '<error>';
    }
    return frames.length === 0 ? head : `${head}\n    at ${frames.join('\n    at ')}`;
  };
}
