/**
 * The byte stream that carries NBD, and the buffered reading and serialized
 * writing both peers need on top of it.
 *
 * {@linkcode NbdStream} is the small structural interface of a connected
 * socket (`Deno.Conn` satisfies it; so does {@linkcode streamPair}'s in-memory
 * pipe). {@linkcode StreamReader} reads exact-size messages with a bounded
 * buffer; {@linkcode StreamWriter} writes whole messages one at a time, so
 * that replies produced concurrently never interleave on the wire.
 *
 * @module
 */

import { NbdConnectionError } from "./error.ts";

/** A connected, ordered, reliable byte stream (a socket). */
export interface NbdStream {
  /** Reads up to `p.length` bytes; `null` at the end of the stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p` (at least one byte); returns how many. */
  write(p: Uint8Array): Promise<number>;
  /** Closes both directions; pending reads end. Safe to call twice. */
  close(): void;
}

/** Size of the reader's buffer: small messages are read through it, large ones straight into place. */
const READ_BUFFER = 256 * 1024;

function lost(cause: unknown): NbdConnectionError {
  if (cause instanceof NbdConnectionError) return cause;
  return new NbdConnectionError("NBD_DISCONNECTED", "NBD connection lost", { cause });
}

/** Reads whole messages from a stream. */
export class StreamReader {
  readonly #stream: NbdStream;
  readonly #buf = new Uint8Array(READ_BUFFER);
  #start = 0;
  #end = 0;

  /** Wraps a stream. */
  constructor(stream: NbdStream) {
    this.#stream = stream;
  }

  async #fill(): Promise<boolean> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end === this.#buf.length) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    let n: number | null;
    try {
      n = await this.#stream.read(this.#buf.subarray(this.#end));
    } catch (cause) {
      throw lost(cause);
    }
    if (n === null || n === 0) return false;
    this.#end += n;
    return true;
  }

  /**
   * Reads exactly `n` bytes into a new array. Returns `null` when the stream
   * ends cleanly before the first byte (`atBoundary`), and throws
   * {@linkcode NbdConnectionError} when it ends in the middle.
   */
  async read(n: number, atBoundary = false): Promise<Uint8Array | null> {
    const out = new Uint8Array(n);
    const ok = await this.readInto(out, atBoundary);
    return ok ? out : null;
  }

  /** Reads exactly `n` bytes, throwing if the stream ends first. */
  async readExact(n: number): Promise<Uint8Array> {
    return (await this.read(n))!;
  }

  /** Fills `out` exactly; returns `false` at a clean end before the first byte when `atBoundary`. */
  async readInto(out: Uint8Array, atBoundary = false): Promise<boolean> {
    let done = 0;
    while (done < out.length) {
      const have = this.#end - this.#start;
      if (have > 0) {
        const take = Math.min(have, out.length - done);
        out.set(this.#buf.subarray(this.#start, this.#start + take), done);
        this.#start += take;
        done += take;
        continue;
      }
      if (out.length - done >= READ_BUFFER / 2) {
        // Large payloads go straight into place.
        let n: number | null;
        try {
          n = await this.#stream.read(out.subarray(done));
        } catch (cause) {
          throw lost(cause);
        }
        if (n === null || n === 0) return this.#ended(done, atBoundary);
        done += n;
        continue;
      }
      if (!await this.#fill()) return this.#ended(done, atBoundary);
    }
    return true;
  }

  /** Reads and drops `n` bytes. */
  async skip(n: number): Promise<void> {
    const scratch = new Uint8Array(Math.min(n, READ_BUFFER));
    while (n > 0) {
      const part = scratch.subarray(0, Math.min(n, scratch.length));
      await this.readInto(part);
      n -= part.length;
    }
  }

  #ended(done: number, atBoundary: boolean): false {
    if (done === 0 && atBoundary) return false;
    throw new NbdConnectionError(
      "NBD_DISCONNECTED",
      done === 0 ? "NBD connection closed by peer" : "NBD connection closed in mid-message",
    );
  }
}

/** Writes whole messages to a stream, one after another. */
export class StreamWriter {
  readonly #stream: NbdStream;
  #tail: Promise<void> = Promise.resolve();
  #failed: NbdConnectionError | null = null;

  /** Wraps a stream. */
  constructor(stream: NbdStream) {
    this.#stream = stream;
  }

  /** Writes `parts` back to back, after every earlier message; rejects if the stream failed. */
  write(...parts: Uint8Array[]): Promise<void> {
    const next = this.#tail.then(async () => {
      if (this.#failed) throw this.#failed;
      try {
        for (const part of parts) {
          let done = 0;
          while (done < part.length) done += await this.#stream.write(part.subarray(done));
        }
      } catch (cause) {
        this.#failed = lost(cause);
        throw this.#failed;
      }
    });
    this.#tail = next.catch(() => {});
    return next;
  }
}
