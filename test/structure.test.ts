/**
 * The structure the design promises (DESIGN.md, style 9), checked on every
 * run: layers import one way, the World reaches transports only through the
 * endpoint interface, and no source file grows past 500 lines.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root } from './helpers.js';

/** What each layer may import (besides itself and packages). */
const ALLOWED: Record<string, readonly string[]> = {
  core: [],
  native: ['core'],
  transports: ['core', 'native'],
  runtime: ['core', 'native', 'transports'],
  launcher: ['core', 'native', 'transports', 'runtime'],
  bench: ['core', 'native', 'transports', 'runtime', 'launcher'],
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const rel = join(dir, name);
    if (statSync(join(root, rel)).isDirectory()) out.push(...sources(rel));
    else if (/\.(ts|mts)$/.test(name) && !name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** Relative imports (static and dynamic) of a file, as paths from the root. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return specs.map((s) => normalize(join(dirname(file), s)));
}

const product = Object.keys(ALLOWED).flatMap((layer) => sources(layer).filter((f) => !f.endsWith('.test.ts')));

describe('structure', () => {
  it('layers import one way: core <- native <- transports <- runtime, launcher <- bench; nothing imports test/', () => {
    const upward: string[] = [];
    for (const file of product) {
      const layer = file.split('/')[0]!;
      for (const target of importsOf(file)) {
        const to = target.split('/')[0]!;
        if (to === layer || ALLOWED[layer]!.includes(to)) continue;
        upward.push(`${file} imports ${relative(root, join(root, target))}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it("the World's file imports no concrete transport (only the endpoint interface and the selector)", () => {
    const concrete = importsOf('runtime/world.ts').filter((t) => t.startsWith('transports/') && !/^transports\/(endpoint|registry)/.test(t));
    expect(concrete).toEqual([]);
  });

  it('no source file is over 500 lines', () => {
    const long = [...product, ...sources('native').filter((f) => f.endsWith('.ts'))]
      .map((f) => [f, readFileSync(join(root, f), 'utf8').split('\n').length] as const)
      .filter(([, n]) => n > 500)
      .map(([f, n]) => `${f}: ${n} lines`);
    const cc = readdirSync(join(root, 'native'))
      .filter((f) => f.endsWith('.cc') || f.endsWith('.h'))
      .map((f) => [`native/${f}`, readFileSync(join(root, 'native', f), 'utf8').split('\n').length] as const)
      .filter(([, n]) => n > 500)
      .map(([f, n]) => `${f}: ${n} lines`);
    expect([...long, ...cc]).toEqual([]);
  });
});
