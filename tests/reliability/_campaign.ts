/**
 * Shared pieces of the reliability campaigns: the CI/soak switch, campaign
 * counters that print one line per campaign, a storage wrapper that refuses
 * access outside a bound, and a "typed rejection" check.
 *
 * Set `QEDSTREAM_SOAK=1` (`deno task soak`) to run every campaign at its long
 * count; `QEDSTREAM_SEED` reruns the random seed of a failure.
 *
 * @module
 */

import assert from "node:assert/strict";
import { QedstreamError } from "../../io/error.ts";
import type { Storage } from "../../io/storage.ts";

/** Whether the long ("soak") counts are asked for. */
export const SOAK = Deno.env.get("QEDSTREAM_SOAK") === "1";

/** The CI count, or the soak count under `QEDSTREAM_SOAK=1`. */
export function count(ci: number, soak: number): number {
  return SOAK ? soak : ci;
}

/** Prints one result line of a campaign, the figure RELIABILITY.md quotes. */
export function report(campaign: string, figures: Record<string, number | string>): void {
  const parts = Object.entries(figures).map(([k, v]) => `${k}=${v}`);
  console.log(`[reliability] ${campaign}: ${parts.join(" ")}${SOAK ? " (soak)" : ""}`);
}

/** Thrown by {@linkcode BoundedStorage} for any access outside its bound. */
export class OutOfBoundsError extends Error {}

/**
 * A storage that refuses (and records) any read or write past `limit` bytes,
 * so a campaign can prove that hostile input never makes the code touch bytes
 * outside its file.
 */
export class BoundedStorage implements Storage {
  /** Accesses refused, for the campaign's assertion. */
  violations = 0;
  readonly #inner: Storage;
  readonly #limit: number;

  /** Wraps `inner`; offsets at or beyond `limit` are refused. */
  constructor(inner: Storage, limit: number) {
    this.#inner = inner;
    this.#limit = limit;
  }

  #guard(offset: number, length: number, what: string): void {
    if (
      !Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) ||
      offset + length > this.#limit
    ) {
      this.violations++;
      throw new OutOfBoundsError(
        `${what} [${offset}, +${length}) outside the ${this.#limit}-byte bound`,
      );
    }
  }

  /** Reads inside the bound. */
  read(offset: number, buf: Uint8Array): Promise<number> {
    this.#guard(offset, buf.length, "read");
    return this.#inner.read(offset, buf);
  }

  /** Writes inside the bound. */
  write(offset: number, data: Uint8Array): Promise<void> {
    this.#guard(offset, data.length, "write");
    return this.#inner.write(offset, data);
  }

  /** Flushes the inner storage. */
  flush(): Promise<void> {
    return this.#inner.flush();
  }

  /** The inner storage's size. */
  size(): Promise<number> {
    return this.#inner.size();
  }

  /** Truncates inside the bound. */
  truncate(length: number): Promise<void> {
    this.#guard(0, length, "truncate");
    return this.#inner.truncate(length);
  }

  /** Closes the inner storage. */
  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** Asserts that `error` is a typed qedstream error with a code and a message. */
export function assertTyped(error: unknown, what: string): asserts error is QedstreamError {
  if (!(error instanceof QedstreamError)) {
    assert.fail(`${what}: untyped rejection ${String((error as Error)?.stack ?? error)}`);
  }
  assert.ok(error.code.length > 0, `${what}: error without a code`);
  assert.ok(error.message.length > 0, `${what}: error without a message`);
}

/** Fails if `p` does not settle within `ms` real milliseconds (a hang). */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (hang)`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
