/**
 * The byte stream a QMP session runs over: chunks in, bytes out. Sockets
 * (see `socket_transport.ts`) and in-memory pipes implement it, so the
 * server and the client run anywhere.
 *
 * @module
 */

/** A bidirectional byte stream. */
export interface ByteTransport {
  /** The next chunk from the peer, or `null` once the peer has closed. */
  read(): Promise<Uint8Array | null>;
  /** Writes all of `data`; resolves when the transport took it, rejects once closed. */
  write(data: Uint8Array): Promise<void>;
  /** Closes both directions; pending and later reads return `null`. Idempotent. */
  close(): void;
}

/** Options of {@linkcode memoryTransportPair}. */
export interface MemoryTransportOptions {
  /** Bytes a direction buffers before `write` waits for the reader. Default 64 KiB. */
  capacity?: number;
}

/** One direction of an in-memory pipe. */
class Pipe {
  readonly chunks: Uint8Array[] = [];
  buffered = 0;
  closed = false;
  #readers: ((c: Uint8Array | null) => void)[] = [];
  #writers: (() => void)[] = [];

  constructor(readonly capacity: number) {}

  push(data: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new Error("transport closed"));
    const copy = data.slice();
    const reader = this.#readers.shift();
    if (reader) {
      reader(copy);
      return Promise.resolve();
    }
    this.chunks.push(copy);
    this.buffered += copy.length;
    if (this.buffered <= this.capacity) return Promise.resolve();
    return new Promise((resolve) => this.#writers.push(resolve));
  }

  pull(): Promise<Uint8Array | null> {
    const chunk = this.chunks.shift();
    if (chunk) {
      this.buffered -= chunk.length;
      while (this.buffered <= this.capacity && this.#writers.length) this.#writers.shift()!();
      return Promise.resolve(chunk);
    }
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => this.#readers.push(resolve));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.#readers.splice(0)) r(null);
    for (const w of this.#writers.splice(0)) w();
  }
}

/**
 * Two connected in-memory transports: what one writes, the other reads.
 *
 * @example
 * ```ts
 * import { memoryTransportPair } from "./transport.ts";
 * const [a, b] = memoryTransportPair();
 * await a.write(new Uint8Array([1, 2]));
 * console.log(await b.read()); // Uint8Array(2) [ 1, 2 ]
 * ```
 */
export function memoryTransportPair(
  options: MemoryTransportOptions = {},
): [ByteTransport, ByteTransport] {
  const capacity = options.capacity ?? 65536;
  const ab = new Pipe(capacity);
  const ba = new Pipe(capacity);
  const end = (rx: Pipe, tx: Pipe): ByteTransport => ({
    read: () => rx.pull(),
    write: (data) => tx.push(data),
    close() {
      rx.close();
      tx.close();
    },
  });
  return [end(ba, ab), end(ab, ba)];
}
