/**
 * A model of GLib's `GHashTable` slot layout (GLib 2.74), just enough to know
 * which key its iterator yields first. qemu's argument visitor keeps the not
 * yet consumed argument names in such a table and reports the first one it
 * yields as `Parameter '…' is unexpected`.
 *
 * @module
 */

import { encodeModUtf8 } from "./mod_utf8.ts";

const PRIME_MOD = [1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749];
const MIN_SHIFT = 3;
const UNUSED = 0;
const TOMBSTONE = 1;

/** `g_str_hash` (djb2 over signed chars). */
function strHash(key: string): number {
  const bytes = encodeModUtf8(key);
  let h = 5381;
  for (const b of bytes) h = (Math.imul(h, 33) + (b >= 0x80 ? b - 256 : b)) >>> 0;
  return h < 2 ? 2 : h;
}

/** A set of strings laid out like a GLib hash table. */
export class GHashTableModel {
  #size = 0;
  #mod = 0;
  #mask = 0;
  #nnodes = 0;
  #noccupied = 0;
  #hashes: number[] = [];
  #keys: (string | undefined)[] = [];

  /** Makes an empty table of the minimum size. */
  constructor() {
    this.#setShift(MIN_SHIFT);
    this.#hashes = new Array(this.#size).fill(UNUSED);
    this.#keys = new Array(this.#size).fill(undefined);
  }

  #setShift(shift: number): void {
    this.#size = 1 << shift;
    this.#mod = PRIME_MOD[shift] ?? this.#size - 1;
    this.#mask = this.#size - 1;
  }

  #index(hash: number): number {
    return (Math.imul(hash, 11) >>> 0) % this.#mod;
  }

  #lookup(key: string, hash: number): number {
    let i = this.#index(hash);
    let step = 0;
    let tomb = -1;
    while (this.#hashes[i] !== UNUSED) {
      const h = this.#hashes[i]!;
      if (h === hash && this.#keys[i] === key) return i;
      if (h === TOMBSTONE && tomb < 0) tomb = i;
      step++;
      i = (i + step) & this.#mask;
    }
    return tomb >= 0 ? tomb : i;
  }

  /** `g_hash_table_insert`. */
  insert(key: string): void {
    const hash = strHash(key);
    const i = this.#lookup(key, hash);
    const old = this.#hashes[i]!;
    if (old >= 2) return;
    this.#hashes[i] = hash;
    this.#keys[i] = key;
    this.#nnodes++;
    if (old === UNUSED) {
      this.#noccupied++;
      this.#maybeResize();
    }
  }

  /** `g_hash_table_remove`. */
  remove(key: string): void {
    const i = this.#lookup(key, strHash(key));
    if (this.#hashes[i]! < 2 || this.#keys[i] !== key) return;
    this.#hashes[i] = TOMBSTONE;
    this.#keys[i] = undefined;
    this.#nnodes--;
    this.#maybeResize();
  }

  /** The key the table's iterator yields first, if any. */
  first(): string | undefined {
    for (let i = 0; i < this.#size; i++) if (this.#hashes[i]! >= 2) return this.#keys[i];
    return undefined;
  }

  #maybeResize(): void {
    const n = this.#noccupied;
    if (
      (this.#size > this.#nnodes * 4 && this.#size > 1 << MIN_SHIFT) ||
      this.#size <= n + Math.floor(n / 16)
    ) {
      this.#resize();
    }
  }

  #resize(): void {
    const oldSize = this.#size;
    let n = Math.trunc(this.#nnodes * 1.333);
    let shift = 0;
    for (; n; shift++) n >>= 1;
    this.#setShift(Math.max(shift, MIN_SHIFT));
    const bitmap = new Uint8Array(Math.max(oldSize, this.#size));
    for (let j = oldSize; j < this.#size; j++) {
      this.#hashes[j] = UNUSED;
      this.#keys[j] = undefined;
    }
    for (let i = 0; i < oldSize; i++) {
      let nodeHash = this.#hashes[i]!;
      if (nodeHash < 2) {
        this.#hashes[i] = UNUSED;
        continue;
      }
      if (bitmap[i]) continue;
      this.#hashes[i] = UNUSED;
      let key = this.#keys[i];
      this.#keys[i] = undefined;
      for (;;) {
        let h = this.#index(nodeHash);
        let step = 0;
        while (bitmap[h]) {
          step++;
          h = (h + step) & this.#mask;
        }
        bitmap[h] = 1;
        const replaced = this.#hashes[h]!;
        const replacedKey = this.#keys[h];
        this.#hashes[h] = nodeHash;
        this.#keys[h] = key;
        if (replaced < 2) break;
        nodeHash = replaced;
        key = replacedKey;
      }
    }
    this.#hashes.length = this.#size;
    this.#keys.length = this.#size;
    this.#noccupied = this.#nnodes;
  }
}
