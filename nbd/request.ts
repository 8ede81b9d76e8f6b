/**
 * Codec of transmission-phase requests (client → server).
 *
 * ```text
 * request header (28 bytes), then `length` bytes of data for NBD_CMD_WRITE only
 *   0       4       6      8        16       24       28
 *   +-------+-------+------+--------+--------+--------+-----...
 *   | magic | flags | type | cookie | offset | length | data
 *   +-------+-------+------+--------+--------+--------+-----...
 *   magic 0x25609513; flags u16 NBD_CMD_FLAG_*; type u16 NBD_CMD_*;
 *   cookie u64 opaque, echoed in the reply; offset u64; length u32
 * ```
 *
 * The cookie is a `bigint` so that a server echoes any 64-bit value exactly.
 * An offset above 2^53 decodes to an approximate number that is still past
 * the end of every export, so bounds checks reject it.
 *
 * @module
 */

import { checkU32, expectSize, getU64, hex, setU64, view } from "./_bytes.ts";
import { NbdProtocolError } from "./error.ts";
import { NBD_REQUEST_MAGIC } from "./protocol.ts";

/** Size of a request header. */
export const REQUEST_HEADER_SIZE = 28;

/** A request header. */
export interface NbdRequest {
  /** Command flags (`NBD_CMD_FLAG_*`). */
  flags: number;
  /** Command type (`NBD_CMD_*`). */
  type: number;
  /** Opaque 64-bit cookie that the reply echoes. */
  cookie: bigint;
  /** Byte offset into the export. */
  offset: number;
  /** Byte length (of the data, for writes). */
  length: number;
}

/**
 * Encodes a request header, followed by `data` when given (writes).
 *
 * @example
 * ```ts
 * import { decodeRequestHeader, encodeRequest } from "./request.ts";
 * import { NBD_CMD_READ } from "./protocol.ts";
 * const bytes = encodeRequest({ flags: 0, type: NBD_CMD_READ, cookie: 1n, offset: 512, length: 4096 });
 * console.log(decodeRequestHeader(bytes).length); // 4096
 * ```
 */
export function encodeRequest(request: NbdRequest, data?: Uint8Array): Uint8Array {
  checkU32(request.length, "NBD request length");
  if (data && data.length !== request.length) {
    throw new RangeError(`NBD write data is ${data.length} bytes but length is ${request.length}`);
  }
  const out = new Uint8Array(REQUEST_HEADER_SIZE + (data?.length ?? 0));
  const dv = view(out);
  dv.setUint32(0, NBD_REQUEST_MAGIC);
  dv.setUint16(4, request.flags);
  dv.setUint16(6, request.type);
  dv.setBigUint64(8, BigInt.asUintN(64, request.cookie));
  setU64(dv, 16, request.offset);
  dv.setUint32(24, request.length);
  if (data) out.set(data, REQUEST_HEADER_SIZE);
  return out;
}

/** Decodes a request header; a bad magic is a protocol error (the server hangs up). */
export function decodeRequestHeader(bytes: Uint8Array): NbdRequest {
  if (bytes.length < REQUEST_HEADER_SIZE) expectSize(bytes, REQUEST_HEADER_SIZE, "NBD request");
  const dv = view(bytes);
  const magic = dv.getUint32(0);
  if (magic !== NBD_REQUEST_MAGIC) {
    throw new NbdProtocolError("NBD_BAD_MAGIC", `bad NBD request magic ${hex(magic)}`);
  }
  return {
    flags: dv.getUint16(4),
    type: dv.getUint16(6),
    cookie: dv.getBigUint64(8),
    offset: getU64(dv, 16),
    length: dv.getUint32(24),
  };
}
