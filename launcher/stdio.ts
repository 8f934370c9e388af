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

/**
 * Calls `closed` when mprun's stdout or stderr can no longer be written: the
 * reader of `mprun ... | head` went away (EPIPE). Node ignores SIGPIPE and
 * raised that as an unhandled error: a stack trace, and the job's folder left
 * behind. Returns what stops watching; write errors after that (a write still
 * queued as the job ends) are ignored.
 */
export function watchOutput(closed: (e: NodeJS.ErrnoException) => void): () => void {
  let said = false; // once: stderr may be what fails
  const onError = (e: NodeJS.ErrnoException): void => {
    if (e.code !== 'EPIPE' && !said) process.stderr.write(`mprun: cannot write the job's output: ${e.message}\n`);
    said = true;
    closed(e);
  };
  const ignore = (): void => undefined;
  for (const s of [process.stdout, process.stderr]) s.on('error', onError);
  return () => {
    for (const s of [process.stdout, process.stderr]) {
      s.on('error', ignore);
      s.off('error', onError);
    }
  };
}
