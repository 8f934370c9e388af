/**
 * The memory of one shared variable on one node (world.dsm.share): one
 * segment that every rank of the node maps, and the node agent too, so that
 * the node's ranks share one physical copy.
 *
 *   [0, 4096)         header: magic, the node lock (release/acquire/fill run one at a time), pages
 *   VERSIONS          u32 per page: at the page's home, its version (bumped by every change
 *                     published); elsewhere, the version this node's copy has caught up with
 *   DATA              the node's copy (the home's copy of a page is the page itself)
 *   TWIN              the copy as of the last release/acquire: what changed since is a diff
 *
 * Pages are homed block-cyclically: page p lives on node p mod nnodes.
 */
export const PAGE_BYTES = 4096;
export const VAR_MAGIC = 0x5344504d; // 'MPDS'
export const W_MAGIC = 0;
export const W_LOCK = 1;
export const W_PAGES = 2;

export interface VarLayout {
  pages: number;
  versions: number;
  data: number;
  twin: number;
  total: number;
}

export function varLayout(bytes: number): VarLayout {
  const pages = Math.max(1, Math.ceil(bytes / PAGE_BYTES));
  const versions = 4096;
  const data = Math.ceil((versions + 4 * pages) / 4096) * 4096;
  const twin = data + pages * PAGE_BYTES;
  return { pages, versions, data, twin, total: twin + pages * PAGE_BYTES };
}

export function homeOf(page: number, nnodes: number): number {
  return page % nnodes;
}

/** Views of a variable's segment. */
export class VarMemory {
  readonly layout: VarLayout;
  readonly i32: Int32Array;
  readonly versions: Uint32Array;
  readonly data: Uint8Array;
  readonly twin: Uint8Array;

  constructor(readonly buffer: ArrayBuffer, bytes: number) {
    this.layout = varLayout(bytes);
    const l = this.layout;
    if (buffer.byteLength < l.total) throw new RangeError(`a shared variable of ${bytes} bytes needs ${l.total} bytes of segment, not ${buffer.byteLength}`);
    this.i32 = new Int32Array(buffer, 0, 1024);
    this.versions = new Uint32Array(buffer, l.versions, l.pages);
    this.data = new Uint8Array(buffer, l.data, l.pages * PAGE_BYTES);
    this.twin = new Uint8Array(buffer, l.twin, l.pages * PAGE_BYTES);
  }

  /** Marks page `p` changed at its home (the agent and home ranks both do). */
  bump(p: number): void {
    Atomics.add(this.versions as unknown as Int32Array, p, 1);
  }
}
