/**
 * The controller's card service (issue 12.4) with real ranks' clients over its
 * real Unix socket: each card held once, handed out only to whoever asks for
 * it, a request for a card not put yet answered when it is put, and what it
 * sent each rank counted in O(cards asked), not O(job).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Controller } from './controller.js';
import { ControlClient } from '../runtime/control.js';

const SECRET = 'a'.repeat(64);

describe('controller card service', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });

  async function job(size: number): Promise<{ controller: Controller; clients: ControlClient[]; rejected: string[] }> {
    const dir = mkdtempSync(join(tmpdir(), 'mprun-ctl-test-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const rejected: string[] = [];
    const controller = new Controller(SECRET, size, { abort: () => undefined, finalized: () => undefined, rejected: (w) => rejected.push(w), connected: () => undefined });
    const address = await controller.listen({ path: join(dir, 'control.sock') });
    cleanups.push(() => controller.close());
    const clients = await Promise.all(Array.from({ length: size }, (_, r) => ControlClient.connect(address, SECRET, r)));
    cleanups.push(() => clients.forEach((c) => c.close()));
    return { controller, clients, rejected };
  }

  const card = (r: number): { pid: number; node: string; blob: string } => ({ pid: 1000 + r, node: `n${r >> 2}`, blob: 'x'.repeat(200) });

  it('hands each rank only the cards it asks for, in the order asked', async () => {
    const { controller, clients } = await job(64);
    clients.forEach((c, r) => c.put(`card:${r}`, card(r)));
    // Rank 5 asks for its node's ranks (4..7), then one neighbour on another node.
    expect(await clients[5]!.cards([4, 5, 6, 7])).toEqual([4, 5, 6, 7].map(card));
    expect(await clients[5]!.cards([9])).toEqual([card(9)]);
    const t = controller.traffic().get(5)!;
    expect(t.requests).toBe(2);
    expect(t.cards).toBe(5);
    // O(cards asked): 5 cards of ~250 bytes, never the 64 of the job.
    expect(t.bytes).toBeLessThan(5 * 300);
    expect(clients[5]!.received).toBe(t.bytes);
    // Ranks that asked for nothing were sent nothing.
    expect(controller.traffic().get(0)).toBeUndefined();
  });

  it('answers a request for cards not put yet once the last of them is put', async () => {
    const { clients } = await job(4);
    clients[0]!.put('card:0', card(0));
    let answered: unknown[] | null = null;
    const asked = clients[0]!.cards([0, 2, 3]).then((c) => (answered = c));
    const other = clients[1]!.cards([3]);
    clients[2]!.put('card:2', card(2));
    await new Promise((r) => setTimeout(r, 50));
    expect(answered).toBeNull();
    clients[3]!.put('card:3', card(3));
    expect(await asked).toEqual([card(0), card(2), card(3)]);
    expect(await other).toEqual([card(3)]);
  });

  it('keeps concurrent requests of one rank apart (answered by id, in any order)', async () => {
    const { clients } = await job(3);
    const first = clients[0]!.cards([2]);
    const second = clients[0]!.cards([1]);
    clients[1]!.put('card:1', card(1));
    expect(await second).toEqual([card(1)]);
    clients[2]!.put('card:2', card(2));
    expect(await first).toEqual([card(2)]);
  });

  it('refuses a rank outside the job and closes only that connection', async () => {
    const { clients, rejected } = await job(2);
    await expect(clients[0]!.cards([7])).rejects.toThrow(/connection to mprun closed/);
    expect(rejected.join()).toMatch(/no rank 7 in a job of 2/);
    clients[1]!.put('card:1', card(1));
    expect(await clients[1]!.cards([1])).toEqual([card(1)]);
  });
});
