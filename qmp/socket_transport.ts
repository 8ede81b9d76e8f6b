/**
 * Deno socket adapters: a {@linkcode ByteTransport} over a `Deno.Conn`,
 * connecting to a Unix socket or TCP port, and listening for a
 * {@linkcode QmpServer}. The only file of `qmp/` that touches the network.
 *
 * @module
 */

import type { ByteTransport } from "./transport.ts";

/** Where a QMP endpoint is: a Unix socket path, or a TCP host and port. */
export type QmpAddress = { path: string } | { hostname?: string; port: number };

/** Wraps a Deno connection as a transport. */
export function connTransport(conn: Deno.Conn, readSize = 65536): ByteTransport {
  let closed = false;
  return {
    async read() {
      if (closed) return null;
      const buf = new Uint8Array(readSize);
      try {
        const n = await conn.read(buf);
        return n === null ? null : buf.subarray(0, n);
      } catch {
        return null;
      }
    },
    async write(data) {
      if (closed) throw new Error("transport closed");
      let off = 0;
      while (off < data.length) off += await conn.write(data.subarray(off));
    },
    close() {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch { /* already closed */ }
    },
  };
}

/** Connects to a Unix socket or a TCP port. */
export async function connect(address: QmpAddress): Promise<ByteTransport> {
  const conn = "path" in address
    ? await Deno.connect({ transport: "unix", path: address.path })
    : await Deno.connect({ hostname: address.hostname ?? "127.0.0.1", port: address.port });
  return connTransport(conn);
}

/** Anything that serves transports (a `QmpServer`). */
export interface TransportServer {
  /** Serves one connection to its end. */
  serve(transport: ByteTransport): Promise<void>;
}

/** A listening socket; close it to stop accepting (open sessions continue). */
export interface QmpListener extends AsyncDisposable {
  /** The bound address (the real port when 0 was asked). */
  readonly address: QmpAddress;
  /** Stops listening and, for a Unix socket, removes it. */
  close(): Promise<void>;
}

/**
 * Listens on a Unix socket (created readable and writable by its owner only)
 * or a TCP port (loopback unless `hostname` says otherwise) and serves every
 * connection with `server`.
 */
export async function listen(server: TransportServer, address: QmpAddress): Promise<QmpListener> {
  let listener: Deno.Listener;
  let bound: QmpAddress;
  if ("path" in address) {
    listener = Deno.listen({ transport: "unix", path: address.path });
    await Deno.chmod(address.path, 0o600);
    bound = { path: address.path };
  } else {
    const hostname = address.hostname ?? "127.0.0.1";
    const tcp = Deno.listen({ hostname, port: address.port });
    listener = tcp;
    bound = { hostname, port: tcp.addr.port };
  }
  const accepting = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      void server.serve(connTransport(conn));
    }
  })();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try {
      listener.close();
    } catch { /* closed */ }
    await accepting;
    if ("path" in bound) await Deno.remove(bound.path).catch(() => {});
  };
  return { address: bound, close, [Symbol.asyncDispose]: close };
}
