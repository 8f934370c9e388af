/**
 * Where a job's ranks wait. A rank blocked in one operation for
 * MPRUN_HANG_REPORT_MS tells mprun what it waits in (kind, peer or team,
 * tag) and the line of its program that called it, and again when that wait
 * ends. mprun prints the picture on --timeout, on SIGUSR1, and with
 * --report-hangs S once every running rank has waited S seconds (a likely
 * deadlock), so that a hang names its cause instead of only its duration.
 */

/** One wait as a rank reports it (runtime/wait.ts WaitReport, over the wire). */
export interface RankWait {
  what: string;
  since: number;
  site: string;
}

/** Checks a 'waits' frame's payload; throws on anything else (a malformed frame closes its connection). */
export function parseWaits(v: unknown): RankWait[] {
  if (!Array.isArray(v)) throw new Error('waits must be a list');
  return v.map((w: unknown) => {
    const o = w as Partial<RankWait> | null;
    if (o === null || typeof o !== 'object' || typeof o.what !== 'string' || typeof o.since !== 'number' || typeof o.site !== 'string') throw new Error('a wait needs what, since and site');
    return { what: o.what.slice(0, 500), since: o.since, site: o.site.slice(0, 500) };
  });
}

export class HangReports {
  readonly #waits = new Map<number, RankWait[]>();

  record(rank: number, waits: RankWait[]): void {
    if (waits.length === 0) this.#waits.delete(rank);
    else this.#waits.set(rank, waits);
  }

  /** Whether every rank of `running` has been waiting for at least `seconds` (then nothing can move them on its own). */
  allWaiting(running: readonly number[], seconds: number, now = Date.now()): boolean {
    return running.length > 0 && running.every((r) => (this.#waits.get(r) ?? []).some((w) => now - w.since >= seconds * 1000));
  }

  /** A key that changes when any reported wait does (so --report-hangs prints each picture once). */
  key(): string {
    return [...this.#waits].map(([r, ws]) => `${r}:${ws.map((w) => w.since).join(',')}`).join(' ');
  }

  /** The report: a line per running rank, its waits or that it is not blocked in mprun. */
  lines(running: readonly number[], now = Date.now()): string[] {
    const out = ['where the ranks wait:'];
    for (const r of running) {
      const ws = this.#waits.get(r);
      if (ws === undefined) {
        out.push(`  rank ${r}: not blocked in an mprun call (computing, or waiting less than MPRUN_HANG_REPORT_MS)`);
        continue;
      }
      for (const w of ws) out.push(`  rank ${r}: ${w.what}, for ${((now - w.since) / 1000).toFixed(1)} s, called at ${w.site}`);
    }
    return out;
  }
}

/** How soon ranks report a wait: 1 s, or sooner when --timeout or --report-hangs is shorter. */
export function hangReportMs(timeoutSeconds: number | null, reportHangsSeconds: number | null): number {
  let ms = 1000;
  if (timeoutSeconds !== null) ms = Math.min(ms, (timeoutSeconds * 1000) / 3);
  if (reportHangsSeconds !== null) ms = Math.min(ms, (reportHangsSeconds * 1000) / 2);
  return Math.max(10, Math.floor(ms));
}
