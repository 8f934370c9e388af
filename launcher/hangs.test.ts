import { describe, expect, it } from 'vitest';
import { HangReports, hangReportMs, parseWaits } from './hangs.js';
import { callerSite } from '../runtime/wait.js';

describe('hang reports', () => {
  it('lists each running rank: its waits, or that it is not blocked', () => {
    const h = new HangReports();
    h.record(0, [{ what: 'recv(source 1, tag 5)', since: 1000, site: '/app.ts:3:1' }]);
    h.record(2, [{ what: 'barrier on the world', since: 2000, site: '/app.ts:9:7' }]);
    expect(h.lines([0, 1, 2], 4500)).toEqual([
      'where the ranks wait:',
      '  rank 0: recv(source 1, tag 5), for 3.5 s, called at /app.ts:3:1',
      '  rank 1: not blocked in an mprun call (computing, or waiting less than MPRUN_HANG_REPORT_MS)',
      '  rank 2: barrier on the world, for 2.5 s, called at /app.ts:9:7',
    ]);
    h.record(0, []);
    expect(h.lines([0], 4500)[1]).toMatch(/rank 0: not blocked/);
  });

  it('says when every running rank has waited long enough, and when the picture changed', () => {
    const h = new HangReports();
    h.record(0, [{ what: 'a', since: 0, site: 's' }]);
    expect(h.allWaiting([0, 1], 1, 5000)).toBe(false);
    h.record(1, [{ what: 'b', since: 4500, site: 's' }]);
    expect(h.allWaiting([0, 1], 1, 5000)).toBe(false);
    expect(h.allWaiting([0, 1], 1, 5500)).toBe(true);
    expect(h.allWaiting([], 1, 5500)).toBe(false);
    const k = h.key();
    h.record(1, [{ what: 'b', since: 6000, site: 's' }]);
    expect(h.key()).not.toBe(k);
  });

  it('rejects malformed waits (the frame closes its connection)', () => {
    expect(() => parseWaits('x')).toThrow(/list/);
    expect(() => parseWaits([{ what: 1, since: 0, site: '' }])).toThrow(/what, since and site/);
    expect(parseWaits([{ what: 'w'.repeat(600), since: 1, site: 's' }])[0]!.what.length).toBe(500);
  });

  it('ranks report sooner than --timeout and --report-hangs', () => {
    expect(hangReportMs(null, null)).toBe(1000);
    expect(hangReportMs(1.5, null)).toBe(500);
    expect(hangReportMs(null, 1)).toBe(500);
  });

  it("finds the program's line below mprun's own frames", () => {
    const own = new URL('../runtime/wait.js', import.meta.url).pathname;
    const stack = ['Error', `    at Waiter.block (${own}:10:5)`, '    at node:internal/process/task_queues:95:5', '    at async file:///home/u/app.ts:12:3'].join('\n');
    expect(callerSite(stack)).toBe('/home/u/app.ts:12:3');
    expect(callerSite(['Error', '    at main (/home/u/sim/app.js:4:9)'].join('\n'))).toBe('/home/u/sim/app.js:4:9');
    expect(callerSite('Error')).toMatch(/unknown/);
  });
});
