/**
 * {@linkcode NbdServer}: serves named exports over Unix sockets or TCP, the
 * way `qemu-storage-daemon --nbd-server … --export type=nbd,…` and
 * `qemu-nbd` do: fixed newstyle, `NBD_OPT_GO` / `INFO` / `EXPORT_NAME` /
 * `LIST`, structured replies, `base:allocation` block status, read, write,
 * write-zeroes, flush, trim (a no-op), several connections at once.
 *
 * Bounds: `maxConnections` connections (more are closed at once),
 * `maxInFlight` requests and `maxInFlightBytes` of payload per connection,
 * 64 KiB of option data, 32 MiB payloads, `handshakeTimeout` to reach
 * transmission. A hostile client only
 * ever loses its own connection.
 *
 * @example
 * ```ts ignore
 * import { NbdServer } from "./server.ts";
 * const server = new NbdServer();
 * server.addExport({ name: "disk", target: myDisk });
 * await server.listen({ type: "unix", path: "/tmp/disk.sock" });
 * // qemu-io -f raw nbd+unix:///disk?socket=/tmp/disk.sock
 * await server.close();
 * ```
 *
 * @module
 */

import { type Clock, systemClock } from "../io/clock.ts";
import type { NbdAddress } from "./address.ts";
import type { NbdExportOptions } from "./export.ts";
import { ServerSession } from "./server_session.ts";
import type { NbdStream } from "./stream.ts";
import { listenStream, type NbdListener } from "./transport.ts";
import { checkBlockSizes } from "./client_handshake.ts";
import { NBD_MAX_PAYLOAD, NBD_MAX_STRING } from "./protocol.ts";

/** Server-wide limits. */
export interface NbdServerOptions {
  /** Clock for the handshake timeout (default the system clock). */
  clock?: Clock;
  /** Connections served at once; more are closed immediately (default 16). */
  maxConnections?: number;
  /** Requests served at once per connection (default 16). */
  maxInFlight?: number;
  /** Time from connection to transmission before a client is dropped, ms (default 10000). */
  handshakeTimeout?: number;
  /** Options a client may send before transmission (default 64). */
  maxOptions?: number;
  /** Read/write payload bytes served at once per connection (default 64 MiB). */
  maxInFlightBytes?: number;
}

/** An NBD server with named exports. */
export class NbdServer {
  readonly #exports = new Map<string, NbdExportOptions>();
  readonly #sessions = new Set<ServerSession>();
  readonly #runs = new Set<Promise<void>>();
  readonly #listeners = new Set<NbdListener>();
  readonly #clock: Clock;
  readonly #maxConnections: number;
  readonly #maxInFlight: number;
  readonly #handshakeTimeout: number;
  readonly #maxOptions: number;
  readonly #maxInFlightBytes: number;
  #closed = false;

  /** Makes a server with no exports and no listeners. */
  constructor(options: NbdServerOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#maxConnections = atLeastOne(options.maxConnections ?? 16, "maxConnections");
    this.#maxInFlight = atLeastOne(options.maxInFlight ?? 16, "maxInFlight");
    this.#handshakeTimeout = atLeastOne(options.handshakeTimeout ?? 10000, "handshakeTimeout");
    this.#maxOptions = atLeastOne(options.maxOptions ?? 64, "maxOptions");
    this.#maxInFlightBytes = atLeastOne(
      options.maxInFlightBytes ?? 64 * 1024 * 1024,
      "maxInFlightBytes",
    );
  }

  /** Adds an export; its name must be new. Clients connecting later can use it. */
  addExport(options: NbdExportOptions): void {
    if (this.#exports.has(options.name)) {
      throw new RangeError(`NBD export '${options.name}' already exists`);
    }
    if (new TextEncoder().encode(options.name).length > NBD_MAX_STRING) {
      throw new RangeError(`NBD export name is longer than ${NBD_MAX_STRING} bytes`);
    }
    const max = options.maximumPayload ?? NBD_MAX_PAYLOAD;
    checkBlockSizes(options.minimumBlock ?? 1, options.preferredBlock ?? 4096, max);
    this.#exports.set(options.name, { ...options });
  }

  /** Removes an export from new negotiations; connections already using it keep it. */
  removeExport(name: string): boolean {
    return this.#exports.delete(name);
  }

  /** Names of the exports. */
  get exportNames(): string[] {
    return [...this.#exports.keys()];
  }

  /** Connections being served. */
  get connectionCount(): number {
    return this.#sessions.size;
  }

  /**
   * Listens on an address and serves every connection; returns the bound
   * address (the real port when port 0 was given). May be called for several
   * addresses.
   */
  listen(address: NbdAddress): NbdAddress {
    if (this.#closed) throw new RangeError("NBD server is closed");
    const listener = listenStream(address);
    this.#listeners.add(listener);
    (async () => {
      for (;;) {
        const stream = await listener.accept();
        if (!stream) return;
        this.serve(stream);
      }
    })();
    return listener.address;
  }

  /** Serves one already-connected stream (a socket or an in-memory pipe) until it ends. */
  serve(stream: NbdStream): Promise<void> {
    if (this.#closed || this.#sessions.size >= this.#maxConnections) {
      stream.close();
      return Promise.resolve();
    }
    const session = new ServerSession(stream, {
      clock: this.#clock,
      lookup: (name) => this.#exports.get(name),
      list: () => [...this.#exports.values()],
      maxInFlight: this.#maxInFlight,
      handshakeTimeout: this.#handshakeTimeout,
      maxOptions: this.#maxOptions,
      maxInFlightBytes: this.#maxInFlightBytes,
    });
    this.#sessions.add(session);
    const run = session.run().finally(() => {
      this.#sessions.delete(session);
      this.#runs.delete(run);
    });
    this.#runs.add(run);
    return run;
  }

  /** Stops listening, lets requests in flight finish, and closes every connection. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const l of this.#listeners) l.close();
    this.#listeners.clear();
    await Promise.all([...this.#sessions].map((s) => s.shutdown()));
    await Promise.all([...this.#runs]);
  }
}

function atLeastOne(value: number, what: string): number {
  if (!Number.isFinite(value) || value < 1) throw new RangeError(`${what} must be ≥ 1`);
  return Math.floor(value);
}
