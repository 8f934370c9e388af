/** OSU micro-benchmark options and defaults (osu_util.h), shared by every benchmark. */

export interface OsuOptions {
  name: string;
  minSize: number;
  maxSize: number;
  /** Iterations and warm-up for sizes up to LARGE_MESSAGE_SIZE ... */
  iterations: number;
  skip: number;
  /** ... and above it. */
  iterationsLarge: number;
  skipLarge: number;
  window: number;
  full: boolean;
  validate: boolean;
  json: boolean;
  /** latency, barrier and allreduce: time this many calls right after init, before any warm-up (0: none). */
  cold: number;
}

export const LARGE_MESSAGE_SIZE = 8192;

export class OsuUsageError extends Error {}

function parseSize(v: string): number {
  const m = /^(\d+)([kKmM]?)$/.exec(v);
  if (m === null) throw new OsuUsageError(`bad message size '${v}'`);
  return Number(m[1]) * (m[2] === '' ? 1 : m[2]!.toLowerCase() === 'k' ? 1024 : 1024 * 1024);
}

export function parseOsuArgs(argv: readonly string[], defaults: { minSize: number; maxSize: number; bandwidth: boolean; collective: boolean }): OsuOptions {
  const name = argv[0];
  if (name === undefined || name.startsWith('-')) throw new OsuUsageError('usage: osu NAME [-m [min:]max] [-i ITER] [-x WARMUP] [-W WINDOW] [-f] [-c] [--cold N] [--json]');
  const o: OsuOptions = {
    name,
    minSize: defaults.minSize,
    maxSize: defaults.maxSize,
    // OSU's defaults: point-to-point latency 10000/100 (1000/10 above 8 KiB),
    // bandwidth 100/10 (20/2), collectives 1000/200 (100/10).
    iterations: defaults.bandwidth ? 100 : defaults.collective ? 1000 : 10000,
    skip: defaults.bandwidth ? 10 : defaults.collective ? 200 : 100,
    iterationsLarge: defaults.bandwidth ? 20 : defaults.collective ? 100 : 1000,
    skipLarge: defaults.bandwidth ? 2 : 10,
    window: 64,
    full: false,
    validate: false,
    json: false,
    cold: 500,
  };
  let itersSet = false;
  let skipSet = false;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new OsuUsageError(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case '-m': {
        const v = next();
        const [lo, hi] = v.includes(':') ? v.split(':') : [undefined, v];
        if (lo !== undefined && lo !== '') o.minSize = parseSize(lo);
        if (hi !== undefined && hi !== '') o.maxSize = parseSize(hi);
        if (o.minSize > o.maxSize) throw new OsuUsageError(`-m: min ${o.minSize} > max ${o.maxSize}`);
        break;
      }
      case '-i':
        o.iterations = o.iterationsLarge = Number(next());
        itersSet = true;
        break;
      case '-x':
        o.skip = o.skipLarge = Number(next());
        skipSet = true;
        break;
      case '-W':
        o.window = Number(next());
        break;
      case '-f':
        o.full = true;
        break;
      case '-c':
        o.validate = true;
        break;
      case '--json':
        o.json = true;
        break;
      case '--cold':
        o.cold = Number(next());
        break;
      default:
        throw new OsuUsageError(`unknown option ${a}`);
    }
  }
  for (const [k, v] of [['-i', o.iterations], ['-x', o.skip], ['-W', o.window], ['--cold', o.cold]] as const) {
    const zero = k === '-x' || k === '--cold';
    if (!Number.isInteger(v) || v < (zero ? 0 : 1)) throw new OsuUsageError(`${k} takes a ${zero ? 'non-negative' : 'positive'} integer`);
  }
  void itersSet;
  void skipSet;
  return o;
}

/** Message sizes: 0 (when min is 0), then powers of two from max(min,1) to max. */
export function sizes(o: OsuOptions): number[] {
  const out: number[] = [];
  if (o.minSize === 0) out.push(0);
  for (let s = Math.max(1, o.minSize); s <= o.maxSize; s *= 2) out.push(s);
  return out;
}

export function loops(o: OsuOptions, size: number): { iterations: number; skip: number } {
  return size > LARGE_MESSAGE_SIZE ? { iterations: o.iterationsLarge, skip: o.skipLarge } : { iterations: o.iterations, skip: o.skip };
}
