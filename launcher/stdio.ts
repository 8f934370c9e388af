/**
 * A rank's output, forwarded to mprun's a line at a time so that ranks'
 * lines never interleave mid-line; with --tag-output each line is prefixed as
 * Open MPI does: `[job,rank]<stdout>:`.
 */
import type { Writable } from 'node:stream';

export class LineSink {
  #partial = '';
  readonly #decoder = new TextDecoder();
  #ended = false;

  constructor(
    readonly out: Writable,
    readonly prefix: string,
  ) {}

  push(chunk: Uint8Array): void {
    if (this.#ended) return;
    const text = this.#partial + this.#decoder.decode(chunk, { stream: true });
    const end = text.lastIndexOf('\n');
    if (end < 0) {
      this.#partial = text;
      return;
    }
    this.#partial = text.slice(end + 1);
    this.#emit(text.slice(0, end));
  }

  /** Flushes a last line without a newline. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    const rest = this.#partial + this.#decoder.decode();
    this.#partial = '';
    if (rest !== '') this.#emit(rest);
  }

  #emit(lines: string): void {
    this.out.write(this.prefix === '' ? `${lines}\n` : lines.split('\n').map((l) => this.prefix + l).join('\n') + '\n');
  }
}
