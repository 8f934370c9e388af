/**
 * The job's exit rules, as a pure state machine (unit-tested without
 * processes): which rank exits fail the job, what the abort message says, and
 * the code mprun exits with.
 * - A rank fails on its own when a signal kills it, it exits non-zero, or it
 *   exits 0 without finalize while other ranks still run (they would wait for
 *   it forever). Its failure aborts the job at once, naming it.
 * - A rank that leaves with ABORTED_EXIT_CODE left because the job was
 *   aborting: it is never blamed.
 * - The job exits with the code of the lowest rank that failed on its own
 *   (a signal counts as 128 + its number), else the abort's code, else 0.
 */
import { constants as osConstants } from 'node:os';
import { ABORTED_EXIT_CODE } from './exit-codes.js';

export interface RankState {
  rank: number;
  /** Index of the node (plan) it runs on. */
  node: number;
  pid: number;
  exited: boolean;
  connected: boolean;
  finalized: boolean;
  /** Exit code this rank is blamed for, when it failed on its own. */
  failure: number | null;
}

/** What a rank's exit means for the job. */
export interface ExitVerdict {
  /** The abort to start now (the first failure of a running job), with its message's cause and code. */
  abort: { cause: string; code: number } | null;
}

export function signalNumber(sig: string): number {
  return (osConstants.signals as Record<string, number>)[sig] ?? 15;
}

export class ExitRules {
  readonly ranks: RankState[];
  #aborting = false;
  #abortCode = 0;
  #live: number;

  constructor(ranks: RankState[]) {
    this.ranks = ranks;
    this.#live = ranks.length;
  }

  get aborting(): boolean {
    return this.#aborting;
  }

  /** Ranks still running. */
  get live(): number {
    return this.#live;
  }

  /** The job starts aborting with `code` (the first call wins); false when it already was. */
  startAbort(code: number): boolean {
    if (this.#aborting) return false;
    this.#aborting = true;
    this.#abortCode = code;
    return true;
  }

  /**
   * Records that `rank` exited (once; later reports of it are ignored: null).
   * When its exit fails a running job, the verdict carries the abort to start.
   */
  exited(rank: number, pid: number, code: number | null, signal: string | null): ExitVerdict | null {
    const r = this.ranks[rank];
    if (r === undefined || r.exited) return null;
    r.exited = true;
    if (pid > 0) r.pid = pid;
    const others = this.#live > 1;
    this.#live--;
    const failed = code !== ABORTED_EXIT_CODE && (signal !== null || code !== 0 || (r.connected && !r.finalized && others));
    if (failed && !this.#aborting) {
      r.failure = signal !== null ? 128 + signalNumber(signal) : code !== 0 ? code! : 1;
      const cause = signal !== null ? `was killed by ${signal}` : code !== 0 ? `exited with code ${code}` : 'exited without calling finalize';
      return { abort: { cause, code: r.failure } };
    }
    // A rank that failed on its own while the job was already aborting is still blamed.
    if (failed && signal === null && code !== 0 && code !== this.#abortCode) r.failure = code;
    return { abort: null };
  }

  /** mprun's exit code once every rank has exited. */
  exitCode(): number {
    const failed = this.ranks.find((r) => r.failure !== null);
    if (failed !== undefined) return failed.failure!;
    return this.#aborting ? this.#abortCode : 0;
  }
}
