/**
 * Codecs of the fixed-newstyle handshake's fixed-size messages: the server
 * greeting, the client flags, and the reply to `NBD_OPT_EXPORT_NAME`.
 *
 * ```text
 * greeting (server → client, 18 bytes)
 *   0       8       16   18
 *   +-------+-------+----+
 *   |NBDMAGIC|IHAVEOPT|flg|   flg: u16 FIXED_NEWSTYLE | NO_ZEROES
 *   +-------+-------+----+
 * client flags (client → server, 4 bytes): u32 C_FIXED_NEWSTYLE | C_NO_ZEROES
 * export-name reply (server → client, 10 or 134 bytes)
 *   0        8      10            134
 *   +--------+------+-------------+
 *   | size   |tflags| 124 zeros   |   zeros omitted when NO_ZEROES was agreed
 *   +--------+------+-------------+
 * ```
 *
 * @module
 */

import { expectSize, getU64, hex, setU64, view } from "./_bytes.ts";
import { NbdProtocolError } from "./error.ts";
import { NBD_MAGIC, NBD_OPTS_MAGIC } from "./protocol.ts";

/** Size of the server greeting. */
export const GREETING_SIZE = 18;
/** Size of the client flags. */
export const CLIENT_FLAGS_SIZE = 4;
/** Size of the export-name reply without padding. */
export const EXPORT_NAME_REPLY_SIZE = 10;
/** Zero padding after the export-name reply unless `NO_ZEROES` was agreed. */
export const EXPORT_NAME_PADDING = 124;

/**
 * Encodes the server greeting.
 *
 * @example
 * ```ts
 * import { decodeGreeting, encodeGreeting } from "./handshake.ts";
 * console.log(decodeGreeting(encodeGreeting(3))); // 3
 * ```
 */
export function encodeGreeting(handshakeFlags: number): Uint8Array {
  const out = new Uint8Array(GREETING_SIZE);
  const dv = view(out);
  dv.setBigUint64(0, NBD_MAGIC);
  dv.setBigUint64(8, NBD_OPTS_MAGIC);
  dv.setUint16(16, handshakeFlags);
  return out;
}

/** Decodes the server greeting and returns its handshake flags; oldstyle servers are refused. */
export function decodeGreeting(bytes: Uint8Array): number {
  expectSize(bytes, GREETING_SIZE, "NBD greeting");
  const dv = view(bytes);
  const magic = dv.getBigUint64(0);
  if (magic !== NBD_MAGIC) {
    throw new NbdProtocolError("NBD_BAD_MAGIC", `not an NBD server: greeting magic ${hex(magic)}`);
  }
  const opts = dv.getBigUint64(8);
  if (opts !== NBD_OPTS_MAGIC) {
    throw new NbdProtocolError(
      "NBD_OLDSTYLE",
      `NBD server does not speak newstyle negotiation (magic ${hex(opts)})`,
    );
  }
  return dv.getUint16(16);
}

/** Encodes the client flags. */
export function encodeClientFlags(flags: number): Uint8Array {
  const out = new Uint8Array(CLIENT_FLAGS_SIZE);
  view(out).setUint32(0, flags);
  return out;
}

/** Decodes the client flags. */
export function decodeClientFlags(bytes: Uint8Array): number {
  expectSize(bytes, CLIENT_FLAGS_SIZE, "NBD client flags");
  return view(bytes).getUint32(0);
}

/** What `NBD_OPT_EXPORT_NAME` (and `NBD_INFO_EXPORT`) tell about an export. */
export interface ExportSizeAndFlags {
  /** Export size in bytes. */
  size: number;
  /** Transmission flags (`NBD_FLAG_*`). */
  flags: number;
}

/** Encodes the reply to `NBD_OPT_EXPORT_NAME`, padded unless `noZeroes`. */
export function encodeExportNameReply(info: ExportSizeAndFlags, noZeroes: boolean): Uint8Array {
  const out = new Uint8Array(EXPORT_NAME_REPLY_SIZE + (noZeroes ? 0 : EXPORT_NAME_PADDING));
  const dv = view(out);
  setU64(dv, 0, info.size);
  dv.setUint16(8, info.flags);
  return out;
}

/** Decodes the first 10 bytes of the reply to `NBD_OPT_EXPORT_NAME` (padding is skipped by the caller). */
export function decodeExportNameReply(bytes: Uint8Array): ExportSizeAndFlags {
  expectSize(bytes, EXPORT_NAME_REPLY_SIZE, "NBD export-name reply");
  const dv = view(bytes);
  return { size: checkSize(getU64(dv, 0)), flags: dv.getUint16(8) };
}

/** Throws unless an export size from the wire is a safe integer. */
export function checkSize(size: number): number {
  if (!Number.isSafeInteger(size)) {
    throw new NbdProtocolError(
      "NBD_SIZE_TOO_LARGE",
      `NBD export size ${size} is larger than 2^53 - 1 bytes`,
    );
  }
  return size;
}
