/** A one-line progress bar on stderr for long transfers (shown on a terminal, or with MPRUN_PROGRESS=1). */

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${u === 0 ? n : n.toFixed(1)} ${units[u]}`;
}

export class ProgressBar {
  readonly #label: string;
  readonly #total: number;
  readonly #enabled: boolean;
  #last = 0;
  #shown = false;

  constructor(label: string, total: number, stream: NodeJS.WriteStream = process.stderr) {
    this.#label = label;
    this.#total = total;
    this.#enabled = (stream.isTTY === true || process.env.MPRUN_PROGRESS === '1') && total > 0;
  }

  update(done: number): void {
    if (!this.#enabled) return;
    const now = Date.now();
    if (now - this.#last < 100 && done < this.#total) return;
    this.#last = now;
    const frac = Math.min(1, done / this.#total);
    const width = 30;
    const full = Math.round(frac * width);
    process.stderr.write(`\r${this.#label} [${'#'.repeat(full)}${'.'.repeat(width - full)}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(done)}/${formatBytes(this.#total)}`);
    this.#shown = true;
  }

  end(): void {
    if (this.#shown) process.stderr.write('\n');
    this.#shown = false;
  }
}
