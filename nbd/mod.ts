/**
 * The Network Block Device protocol: how qedstream reads templates from
 * real NBD servers (qemu-nbd, nbdkit, qemu-storage-daemon) and how it
 * exports its own disks to real NBD clients (qemu-io, qemu-img, nbdcopy,
 * nbdinfo, qemu).
 *
 * - Codecs (pure, big-endian): {@linkcode encodeGreeting} and the rest of
 *   `handshake.ts`, option requests (`option.ts`), option replies
 *   (`option_reply.ts`), requests (`request.ts`), simple and structured
 *   replies (`reply.ts`); numbers in `protocol.ts`.
 * - {@linkcode NbdClient}: a remote export as `{ size, read, write,
 *   writeZeroes, flush, blockStatus, close }`, for `block/` to wrap as a node.
 * - {@linkcode NbdServer}: serves {@linkcode NbdExportTarget}s by name.
 * - {@linkcode parseNbdUri} / {@linkcode formatNbdUri} and the blockdev
 *   option set ({@linkcode parseNbdBlockdevOptions}).
 * - {@linkcode connectStream} / {@linkcode listenStream}: the only socket
 *   code; {@linkcode streamPair} connects a client and a server in memory.
 *
 * `nbd/` sits below `block/` and imports only `io/`.
 *
 * @example Round trip in memory
 * ```ts
 * import { NbdClient, NbdServer, streamPair } from "./mod.ts";
 * const bytes = new Uint8Array(1 << 20);
 * const server = new NbdServer();
 * server.addExport({
 *   name: "disk",
 *   target: {
 *     size: bytes.length,
 *     read: async (o, b) => b.set(bytes.subarray(o, o + b.length)),
 *     write: async (o, d) => bytes.set(d, o),
 *     writeZeroes: async (o, n) => void bytes.fill(0, o, o + n),
 *     flush: async () => {},
 *     blockStatus: async (_o, n) => ({ kind: "data" as const, length: n }),
 *   },
 * });
 * const client = await NbdClient.connect({
 *   exportName: "disk",
 *   connect: async () => {
 *     const [a, b] = streamPair();
 *     server.serve(b);
 *     return a;
 *   },
 * });
 * await client.write(4096, new Uint8Array([1, 2, 3]));
 * const buf = new Uint8Array(3);
 * await client.read(4096, buf);
 * console.log(buf); // Uint8Array(3) [ 1, 2, 3 ]
 * await client.close();
 * await server.close();
 * ```
 *
 * @module
 */

export { describeAddress, type NbdAddress } from "./address.ts";
export {
  type NbdBlockStatus,
  type NbdBlockStatusKind,
  NbdClient,
  type NbdClientEvent,
  type NbdClientOptions,
} from "./client.ts";
export {
  checkBlockSizes,
  type NbdExportInfo,
  negotiate,
  negotiateList,
  type NegotiateOptions,
} from "./client_handshake.ts";
export {
  NbdConnectionError,
  NbdOptionError,
  NbdProtocolError,
  NbdRequestError,
  NbdTimeoutError,
  NbdUriError,
} from "./error.ts";
export type { NbdExportOptions, NbdExportStatusKind, NbdExportTarget } from "./export.ts";
export * from "./handshake.ts";
export * from "./option.ts";
export * from "./option_reply.ts";
export { streamPair } from "./pipe.ts";
export * from "./protocol.ts";
export * from "./reply.ts";
export * from "./request.ts";
export { NbdServer, type NbdServerOptions } from "./server.ts";
export { type NbdStream, StreamReader, StreamWriter } from "./stream.ts";
export { connectStream, listenStream, type NbdListener } from "./transport.ts";
export {
  blockdevFromTarget,
  formatNbdBlockdevOptions,
  isNbdUri,
  type NbdBlockdevOptions,
  type NbdTarget,
  parseNbdBlockdevOptions,
  parseNbdUri,
  parseSocketAddress,
} from "./uri.ts";
