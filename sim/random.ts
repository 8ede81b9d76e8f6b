/**
 * A small seeded pseudo-random generator for the simulator.
 *
 * Library code never calls `Math.random`: every random choice of the remote
 * (faults), the template (layout) and the guest (hot set, workload) comes from
 * a {@linkcode Random} made from a seed, so a run repeats exactly.
 *
 * @module
 */

/** Mixes a 32-bit value (the finaliser of MurmurHash3): a cheap, well-spread hash. */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Hashes a string to 32 bits (FNV-1a), for deriving named sub-streams from a seed. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  }
  return h >>> 0;
}

/**
 * A seeded generator (sfc32: small, fast, and passes the usual statistical
 * batteries well enough for workloads and fault injection).
 *
 * @example The same seed gives the same sequence
 * ```ts
 * import { Random } from "./random.ts";
 * const a = new Random(42), b = new Random(42);
 * console.log(a.int(0, 100) === b.int(0, 100)); // true
 * ```
 */
export class Random {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** Makes a generator from a 32-bit seed (any number; it is hashed). */
  constructor(seed: number) {
    const s = seed >>> 0;
    this.#a = mix32(s ^ 0x9e3779b9);
    this.#b = mix32(s ^ 0x243f6a88);
    this.#c = mix32(s ^ 0xb7e15162);
    this.#d = 1;
    for (let i = 0; i < 12; i++) this.uint32();
  }

  /** The next 32-bit unsigned integer. */
  uint32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** A float in [0, 1). */
  next(): number {
    return this.uint32() / 4294967296;
  }

  /** An integer in [min, max) (`max > min`). */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min));
  }

  /** `true` with probability `p`. */
  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("Random.pick() needs a non-empty array");
    return items[this.int(0, items.length)]!;
  }

  /** A new generator whose sequence depends on this one's seed and `label` only. */
  fork(label: string): Random {
    return new Random(mix32(this.#a ^ hashString(label)));
  }
}
