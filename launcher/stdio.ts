/**
 * Forwards a rank's stdout/stderr to mprun's a line at a time, so that ranks'
 * lines never interleave mid-line; with --tag-output each line is prefixed as
 * Open MPI does: `[job,rank]<stdout>:`.
 */
import type { Readable, Writable } from 'node:stream';

export function forwardLines(from: Readable, to: Writable, prefix: string): Promise<void> {
  return new Promise((resolve) => {
    let partial = '';
    const emit = (lines: string): void => {
      to.write(prefix === '' ? lines : lines.split('\n').map((l) => prefix + l).join('\n') + '\n');
    };
    from.setEncoding('utf8');
    from.on('data', (chunk: string) => {
      const text = partial + chunk;
      const end = text.lastIndexOf('\n');
      if (end < 0) {
        partial = text;
        return;
      }
      partial = text.slice(end + 1);
      emit(prefix === '' ? text.slice(0, end + 1) : text.slice(0, end));
    });
    const finish = (): void => {
      if (partial !== '') emit(prefix === '' ? partial + '\n' : partial);
      partial = '';
      resolve();
    };
    from.on('end', finish);
    from.on('error', finish);
  });
}
