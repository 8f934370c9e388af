/** The semaphore state machine at its home agent, in process. */
import { describe, expect, it } from 'vitest';
import { RequestRefused, SemOp } from './frames.js';
import { SemaphoreTable } from './semaphores.js';

/** A table and its requests; a requester in `gone` has lost its connection (its grant goes nowhere). */
function table(): { t: SemaphoreTable; granted: string[]; gone: Set<string>; op: (op: number, name: string, who: string, initial?: number) => void } {
  const t = new SemaphoreTable();
  const granted: string[] = [];
  const gone = new Set<string>();
  const grant = (who: string) => (): boolean => {
    if (gone.has(who)) return false;
    granted.push(who);
    return true;
  };
  return { t, granted, gone, op: (op, name, who, initial = 0) => t.serve(op, name, initial, grant(who)) };
}

describe('SemaphoreTable', () => {
  it('creates a semaphore once: later CREATEs (every rank sends one) keep its count', () => {
    const { t, granted, op } = table();
    op(SemOp.CREATE, 's', 'c0', 2);
    op(SemOp.WAIT, 's', 'w0');
    op(SemOp.CREATE, 's', 'c1', 2);
    expect(granted).toEqual(['c0', 'w0', 'c1']);
    expect(t.state('s')).toEqual({ count: 1, waiting: 0 });
  });

  it('grants waits while permits last, then queues them; posts wake the oldest waiter first', () => {
    const { t, granted, op } = table();
    op(SemOp.CREATE, 'lock', 'create', 1);
    op(SemOp.WAIT, 'lock', 'a');
    op(SemOp.WAIT, 'lock', 'b');
    op(SemOp.WAIT, 'lock', 'c');
    expect(granted).toEqual(['create', 'a']);
    expect(t.state('lock')).toEqual({ count: 0, waiting: 2 });
    op(SemOp.POST, 'lock', 'post-a');
    expect(granted).toEqual(['create', 'a', 'b', 'post-a']);
    op(SemOp.POST, 'lock', 'post-b');
    op(SemOp.POST, 'lock', 'post-c');
    expect(granted).toEqual(['create', 'a', 'b', 'post-a', 'c', 'post-b', 'post-c']);
    expect(t.state('lock')).toEqual({ count: 1, waiting: 0 });
  });

  it('posts before waits add permits; names are independent', () => {
    const { t, granted, op } = table();
    op(SemOp.CREATE, 'x', 'cx');
    op(SemOp.CREATE, 'y', 'cy');
    op(SemOp.POST, 'x', 'px1');
    op(SemOp.POST, 'x', 'px2');
    op(SemOp.WAIT, 'y', 'wy');
    op(SemOp.WAIT, 'x', 'wx');
    expect(granted).toEqual(['cx', 'cy', 'px1', 'px2', 'wx']);
    expect(t.state('x')).toEqual({ count: 1, waiting: 0 });
    expect(t.state('y')).toEqual({ count: 0, waiting: 1 });
  });

  it('a post passes over waiters whose connection is gone: the permit goes to the next waiter, else to the count', () => {
    const { t, granted, gone, op } = table();
    op(SemOp.CREATE, 's', 'c');
    op(SemOp.WAIT, 's', 'a');
    op(SemOp.WAIT, 's', 'b');
    op(SemOp.WAIT, 's', 'd');
    gone.add('a');
    op(SemOp.POST, 's', 'p1');
    expect(granted).toEqual(['c', 'b', 'p1']);
    gone.add('d');
    op(SemOp.POST, 's', 'p2');
    expect(granted).toEqual(['c', 'b', 'p1', 'p2']);
    expect(t.state('s')).toEqual({ count: 1, waiting: 0 });
  });

  it('refuses operations on a semaphore it does not have, and unknown operations', () => {
    const { t, granted, op } = table();
    expect(() => op(SemOp.WAIT, 'nope', 'w')).toThrow(new RequestRefused("no semaphore 'nope' here"));
    expect(() => op(SemOp.POST, 'nope', 'p')).toThrow(RequestRefused);
    op(SemOp.CREATE, 's', 'c');
    expect(() => op(9, 's', 'q')).toThrow(/unknown semaphore operation 9/);
    expect(granted).toEqual(['c']);
    expect(t.state('nope')).toBeUndefined();
  });
});
