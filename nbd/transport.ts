/**
 * The only file of `nbd/` that touches the runtime's sockets: connect to and
 * listen on a Unix socket or TCP address with Deno's network API.
 *
 * Everything else in `nbd/` speaks to an {@linkcode NbdStream}, so it also
 * runs over an in-memory pipe ({@linkcode streamPair}).
 *
 * @module
 */

import { describeAddress, type NbdAddress } from "./address.ts";
import { NbdConnectionError } from "./error.ts";
import type { NbdStream } from "./stream.ts";

/**
 * Connects to an NBD server's address.
 *
 * @example
 * ```ts ignore
 * import { connectStream } from "./transport.ts";
 * const stream = await connectStream({ type: "unix", path: "/run/nbd.sock" });
 * stream.close();
 * ```
 */
export async function connectStream(address: NbdAddress): Promise<NbdStream> {
  try {
    const conn = address.type === "unix"
      ? await Deno.connect({ transport: "unix", path: address.path })
      : await Deno.connect({ transport: "tcp", hostname: address.host, port: address.port });
    if (address.type === "inet") (conn as Deno.TcpConn).setNoDelay(true);
    return wrap(conn);
  } catch (cause) {
    throw new NbdConnectionError(
      "NBD_CONNECT_FAILED",
      `Failed to connect to '${describeAddress(address)}': ${(cause as Error).message}`,
      { cause },
    );
  }
}

function wrap(conn: Deno.Conn): NbdStream {
  let closed = false;
  return {
    read: (p) => conn.read(p),
    write: (p) => conn.write(p),
    close() {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch {
        // Already closed by the runtime.
      }
    },
  };
}

/** A listening socket that hands out connected streams. */
export interface NbdListener {
  /** The bound address (with the real port when 0 was asked for). */
  readonly address: NbdAddress;
  /** The next connection, or `null` once the listener is closed. */
  accept(): Promise<NbdStream | null>;
  /** Stops listening; removes a Unix socket file. */
  close(): void;
}

/** Listens on a Unix socket path or a TCP host and port (port 0 picks a free one). */
export function listenStream(address: NbdAddress): NbdListener {
  const listener = address.type === "unix"
    ? Deno.listen({ transport: "unix", path: address.path })
    : Deno.listen({ transport: "tcp", hostname: address.host, port: address.port });
  // Owner-only, like the QMP socket: the umask alone may let others connect.
  if (address.type === "unix") Deno.chmodSync(address.path, 0o600);
  const bound: NbdAddress = address.type === "unix"
    ? address
    : { type: "inet", host: address.host, port: (listener.addr as Deno.NetAddr).port };
  let closed = false;
  return {
    address: bound,
    async accept() {
      for (;;) {
        if (closed) return null;
        try {
          const conn = await listener.accept();
          if (conn.remoteAddr.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
          return wrap(conn);
        } catch (cause) {
          if (closed || cause instanceof Deno.errors.BadResource) return null;
          // A connection that failed while being accepted does not stop the listener.
        }
      }
    },
    close() {
      if (closed) return;
      closed = true;
      listener.close();
    },
  };
}
