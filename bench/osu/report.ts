/** OSU's output format (header lines starting with '#', fixed-width columns), or JSON lines. */
import type { OsuOptions } from './options.js';

export interface Row {
  size: number;
  /** The main figure: latency in us, or bandwidth in MB/s. */
  value: number;
  min?: number;
  max?: number;
  iterations: number;
  /** Extra named columns (e.g. a baseline measured in the same run). */
  extra?: Record<string, number>;
}

/** Every row printed by this process, in order (bench/osu.ts puts the cold figure beside the steady one). */
export const reported: Row[] = [];

export class Report {
  #headerDone = false;
  constructor(readonly o: OsuOptions, readonly title: string, readonly column: string) {}

  header(notes: string[] = []): void {
    if (this.o.json || this.#headerDone) return;
    this.#headerDone = true;
    console.log(`# ${this.title}`);
    for (const n of notes) console.log(`# ${n}`);
  }

  #columns(extra: string[]): void {
    const cols = [`# Size`.padEnd(10), this.column.padStart(20)];
    if (this.o.full) cols.push('Min'.padStart(12), 'Max'.padStart(12), 'Iterations'.padStart(12));
    for (const e of extra) cols.push(e.padStart(20));
    console.log(cols.join(''));
  }

  #printedColumns = false;

  row(r: Row): void {
    reported.push(r);
    if (this.o.json) {
      console.log(JSON.stringify({ benchmark: this.o.name, ...r }));
      return;
    }
    if (!this.#printedColumns) {
      this.#printedColumns = true;
      this.#columns(Object.keys(r.extra ?? {}));
    }
    const cols = [String(r.size).padEnd(10), r.value.toFixed(2).padStart(20)];
    if (this.o.full) cols.push((r.min ?? r.value).toFixed(2).padStart(12), (r.max ?? r.value).toFixed(2).padStart(12), String(r.iterations).padStart(12));
    for (const v of Object.values(r.extra ?? {})) cols.push(v.toFixed(2).padStart(20));
    console.log(cols.join(''));
  }
}
