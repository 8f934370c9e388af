import { mkdtempSync, readdirSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { makeJobDir, OWNER_FILE, removeJobDir } from './tmpdirs.js';

describe('job folders', () => {
  it('are removed with their owner file last, so that one left half-removed still names its owner', async () => {
    const base = mkdtempSync(join(tmpdir(), 'mprun-tmpdirs-test-'));
    onTestFinished(() => rmSync(base, { recursive: true, force: true }));
    const dir = makeJobDir(base);
    // As a job's folder holds them: a compiled app and its source map (the names of one left behind,
    // half-removed, on 2026-12-03: a directory's order put the owner file before them), and more.
    for (const name of ['where.4264a036608108a3.rank.mjs', 'where.4264a036608108a3.rank.mjs.map']) writeFileSync(join(dir, name), '');
    for (let i = 0; i < 50; i++) writeFileSync(join(dir, `app${i}.rank.mjs`), '');
    const entries = new Set(readdirSync(dir));
    const removed: string[] = [];
    // The folder's entries in the order they go (the folder itself, going last, is an event too).
    const watcher = watch(dir, (_event, name) => {
      if (name !== null && entries.has(name) && !removed.includes(name)) removed.push(name);
    });
    removeJobDir(dir);
    await new Promise((r) => setTimeout(r, 200)); // the watcher's events are delivered asynchronously
    watcher.close();
    expect(readdirSync(base)).toEqual([]);
    expect(removed.length).toBe(53);
    expect(removed.at(-1)).toBe(OWNER_FILE);
  });

  it('a folder already gone is no error', () => {
    expect(() => removeJobDir(join(tmpdir(), 'mprun-no-such-folder'))).not.toThrow();
  });
});
