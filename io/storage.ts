/**
 * The one small interface every byte store in qedstream implements.
 *
 * Image formats, the block layer and the simulator all read and write through
 * a {@linkcode Storage}: a real file ({@linkcode FileStorage}), memory
 * ({@linkcode MemoryStorage}), or a wrapper that injects faults or latency.
 *
 * @module
 */

/**
 * Positional, byte-addressed storage.
 *
 * Reads past the end return fewer bytes (the rest of the buffer is left as it
 * was). Writes past the end grow the store, the gap reading as zeros.
 * Requests may run concurrently; a request sees every write that completed
 * before it was issued. What is durable after a power cut is exactly what was
 * written before the last completed {@linkcode Storage.flush}, plus any
 * subset of what was written since.
 */
export interface Storage {
  /**
   * Reads up to `buf.length` bytes at `offset` into `buf`.
   *
   * @returns the number of bytes read: less than `buf.length` only at the end.
   */
  read(offset: number, buf: Uint8Array): Promise<number>;
  /** Writes all of `data` at `offset`, growing the store if needed. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes every completed write durable. */
  flush(): Promise<void>;
  /** The current length in bytes. */
  size(): Promise<number>;
  /** Sets the length, cutting or extending with zeros. */
  truncate(length: number): Promise<void>;
  /** Releases the store; later calls fail. */
  close(): Promise<void>;
}

/**
 * Reads exactly `buf.length` bytes at `offset`, filling what lies past the
 * end of the store with zeros.
 */
export async function readFull(
  storage: Storage,
  offset: number,
  buf: Uint8Array,
): Promise<void> {
  const n = await storage.read(offset, buf);
  if (n < buf.length) buf.fill(0, n);
}
