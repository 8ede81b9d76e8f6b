/**
 * The order in which qemu walks the members of a JSON object.
 *
 * qemu stores objects in a hash table (`QDict`, 512 buckets, gdbm's hash) and
 * both its JSON writer and its QMP input checks walk that table bucket by
 * bucket, newest entry first within a bucket. So `{"b": 1, "a": 2}` is echoed
 * as `{"a": 2, "b": 1}`, a reply reads `{"return": …, "id": …}`, and of two
 * offending members the one in the lower bucket is reported. We reproduce
 * that order so output is byte-identical.
 *
 * @module
 */

import { encodeModUtf8 } from "./mod_utf8.ts";

const BUCKETS = 512;
/**
 * Member names whose bucket is remembered, and the longest one remembered.
 * The cache is for the short names the schema uses over and over; it must be
 * bounded in bytes, not only in entries, because a client can send any number
 * of distinct member names of any length (up to the parser's message limit),
 * and every name it caches stays in memory for good (issue 8). A longer name
 * is hashed each time, in time linear in its length, as parsing it was.
 */
const BUCKET_CACHE_ENTRIES = 4096;
const BUCKET_CACHE_KEY_LENGTH = 64;
const bucketCache = new Map<string, number>();

/** qemu's `tdb_hash` of a key, over its modified-UTF-8 bytes. */
export function tdbHash(key: string): number {
  const bytes = encodeModUtf8(key);
  let value = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    value = (value + (bytes[i]! << ((i * 5) % 24))) >>> 0;
  }
  return (Math.imul(1103515243, value) + 12345) >>> 0;
}

/** The `QDict` bucket of a key. */
export function qdictBucket(key: string): number {
  let b = bucketCache.get(key);
  if (b === undefined) {
    b = tdbHash(key) % BUCKETS;
    if (bucketCache.size < BUCKET_CACHE_ENTRIES && key.length <= BUCKET_CACHE_KEY_LENGTH) {
      bucketCache.set(key, b);
    }
  }
  return b;
}

/**
 * The keys of `obj` in qemu's iteration order, given that they were inserted
 * in JavaScript's key order (integer-like keys, which JavaScript lists first,
 * are the one place where this can differ from the wire order).
 */
export function qdictKeys(obj: object): string[] {
  const keys = Object.keys(obj);
  if (keys.length < 2) return keys;
  const order = keys.map((k, i) => ({ k, i, b: qdictBucket(k) }));
  order.sort((x, y) => x.b - y.b || y.i - x.i);
  return order.map((e) => e.k);
}
