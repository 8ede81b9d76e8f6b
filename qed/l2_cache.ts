/**
 * A bounded cache of L2 tables keyed by their file offset.
 *
 * Like qemu's cache it holds at most 50 tables by default and is
 * write-through (the caller writes a table before or as it updates it here).
 * Unlike qemu it evicts the least recently used table. A table can be pinned
 * while an allocating write updates it in memory and on disk: a pinned table
 * is never evicted, so a concurrent lookup cannot reload a stale copy from
 * disk while the update is in flight.
 *
 * @module
 */

import type { QedTable } from "./table.ts";

/** Number of L2 tables cached by default (qemu's value). */
export const QED_DEFAULT_L2_CACHE_SIZE = 50;

/**
 * A least-recently-used cache of L2 tables with pinning.
 *
 * @example
 * ```ts
 * import { L2Cache } from "./l2_cache.ts";
 * import { QedTable } from "./table.ts";
 * const cache = new L2Cache(1);
 * cache.set(0x60000, QedTable.empty(8));
 * cache.set(0xa0000, QedTable.empty(8));
 * console.log(cache.get(0x60000), cache.size); // undefined 1
 * ```
 */
export class L2Cache {
  /** The most tables kept unpinned. */
  readonly capacity: number;
  #tables = new Map<number, QedTable>();
  #pins = new Map<number, number>();
  /** The most recently used offset: touching it again needs no reordering. */
  #newest: number | undefined;

  /** Makes a cache holding at most `capacity` (at least 1) tables. */
  constructor(capacity: number = QED_DEFAULT_L2_CACHE_SIZE) {
    this.capacity = Math.max(1, Math.floor(capacity));
  }

  /** Number of tables held. */
  get size(): number {
    return this.#tables.size;
  }

  /** The table at `offset`, marked most recently used; `undefined` if absent. */
  get(offset: number): QedTable | undefined {
    const table = this.#tables.get(offset);
    if (table !== undefined && offset !== this.#newest) {
      this.#tables.delete(offset);
      this.#tables.set(offset, table);
      this.#newest = offset;
    }
    return table;
  }

  /** Stores `table` for `offset`, evicting least recently used unpinned other tables. */
  set(offset: number, table: QedTable): void {
    // Every allocating write touches its table several times: a delete and
    // re-insert per touch would keep the Map rehashing.
    if (offset === this.#newest && this.#tables.get(offset) === table) return;
    this.#tables.delete(offset);
    this.#tables.set(offset, table);
    this.#newest = offset;
    if (this.#tables.size <= this.capacity) return;
    for (const key of this.#tables.keys()) {
      if (this.#tables.size <= this.capacity) break;
      if (key !== offset && !this.#pins.has(key)) this.#tables.delete(key);
    }
  }

  /** Forgets the table at `offset` (pinned or not). */
  delete(offset: number): void {
    if (offset === this.#newest) this.#newest = undefined;
    this.#tables.delete(offset);
  }

  /** Forgets every table. */
  clear(): void {
    this.#newest = undefined;
    this.#tables.clear();
  }

  /** Keeps the table at `offset` from being evicted until {@linkcode unpin}. */
  pin(offset: number): void {
    this.#pins.set(offset, (this.#pins.get(offset) ?? 0) + 1);
  }

  /** Releases one {@linkcode pin}. */
  unpin(offset: number): void {
    const n = (this.#pins.get(offset) ?? 0) - 1;
    if (n > 0) this.#pins.set(offset, n);
    else this.#pins.delete(offset);
  }
}
