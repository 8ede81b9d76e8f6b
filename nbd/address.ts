/**
 * Where an NBD server listens: qemu's `SocketAddress` restricted to the two
 * kinds qedstream uses, a Unix socket path or a TCP host and port.
 *
 * @module
 */

/** A Unix socket or a TCP endpoint, with qemu's field names (`server.type=unix,server.path=…`). */
export type NbdAddress =
  | { type: "unix"; path: string }
  | { type: "inet"; host: string; port: number };

/**
 * A short human-readable form of an address, for messages.
 *
 * @example
 * ```ts
 * import { describeAddress } from "./address.ts";
 * console.log(describeAddress({ type: "inet", host: "::1", port: 10809 })); // [::1]:10809
 * ```
 */
export function describeAddress(address: NbdAddress): string {
  if (address.type === "unix") return `unix:${address.path}`;
  const host = address.host.includes(":") ? `[${address.host}]` : address.host;
  return `${host}:${address.port}`;
}
