/**
 * An in-memory, bounded, bidirectional byte pipe: two connected
 * {@linkcode NbdStream}s, for tests and for running an NBD client and server
 * in one process without sockets.
 *
 * @module
 */

import type { NbdStream } from "./stream.ts";

/** Bytes a direction buffers before `write` waits for the reader. */
const PIPE_CAPACITY = 1024 * 1024;

class Direction {
  chunks: Uint8Array[] = [];
  buffered = 0;
  closed = false;
  #readers: (() => void)[] = [];
  #writers: (() => void)[] = [];

  wake(list: (() => void)[]): void {
    for (const w of list.splice(0)) w();
  }

  async write(p: Uint8Array): Promise<number> {
    while (!this.closed && this.buffered >= PIPE_CAPACITY) {
      await new Promise<void>((r) => this.#writers.push(r));
    }
    if (this.closed) throw new Error("pipe closed");
    const n = Math.min(p.length, PIPE_CAPACITY);
    this.chunks.push(p.slice(0, n));
    this.buffered += n;
    this.wake(this.#readers);
    return n;
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.chunks.length === 0) {
      if (this.closed) return null;
      await new Promise<void>((r) => this.#readers.push(r));
    }
    let done = 0;
    while (done < p.length && this.chunks.length > 0) {
      const head = this.chunks[0]!;
      const take = Math.min(head.length, p.length - done);
      p.set(head.subarray(0, take), done);
      done += take;
      if (take === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(take);
    }
    this.buffered -= done;
    this.wake(this.#writers);
    return done;
  }

  close(): void {
    this.closed = true;
    this.wake(this.#readers);
    this.wake(this.#writers);
  }
}

/**
 * Two connected in-memory streams: what one writes, the other reads.
 *
 * @example
 * ```ts
 * import { streamPair } from "./pipe.ts";
 * const [a, b] = streamPair();
 * await a.write(new Uint8Array([1, 2]));
 * const buf = new Uint8Array(2);
 * console.log(await b.read(buf)); // 2
 * ```
 */
export function streamPair(): [NbdStream, NbdStream] {
  const ab = new Direction();
  const ba = new Direction();
  const end = (out: Direction, inn: Direction): NbdStream => ({
    read: (p) => inn.read(p),
    write: (p) => out.write(p),
    close() {
      out.close();
      inn.close();
    },
  });
  return [end(ab, ba), end(ba, ab)];
}
