/**
 * Codecs of transmission-phase replies (server → client): simple replies and
 * structured reply chunks with their payloads.
 *
 * ```text
 * simple reply (16 bytes), then the data of a successful NBD_CMD_READ
 *   0       4       8        16
 *   +-------+-------+--------+-----...
 *   | magic | error | cookie | data
 *   +-------+-------+--------+-----...     magic 0x67446698
 * structured chunk (20 bytes), then `length` bytes of payload
 *   0       4       6      8        16       20
 *   +-------+-------+------+--------+--------+------...
 *   | magic | flags | type | cookie | length | payload
 *   +-------+-------+------+--------+--------+------...   magic 0x668e33ef, flags bit 0 DONE
 * payloads
 *   NONE          (empty)
 *   OFFSET_DATA   u64 offset | data (≥ 1 byte)
 *   OFFSET_HOLE   u64 offset | u32 hole length (≠ 0)
 *   BLOCK_STATUS  u32 context id | k × (u32 extent length ≠ 0 | u32 status flags)
 *   ERROR         u32 error (≠ 0) | u16 message length | message
 *   ERROR_OFFSET  u32 error (≠ 0) | u16 message length | message | u64 offset
 * ```
 *
 * Limits for untrusted input: a non-data payload ≤
 * {@linkcode NBD_MAX_CHUNK_PAYLOAD} (2^20 extents); the caller bounds data
 * payloads by the request they answer.
 *
 * @module
 */

import { expectAtLeast, expectSize, fromUtf8, getU64, hex, setU64, utf8, view } from "./_bytes.ts";
import { NbdProtocolError } from "./error.ts";
import {
  NBD_MAX_EXTENTS,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_BIT,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
} from "./protocol.ts";

/** Size of a simple reply header. */
export const SIMPLE_REPLY_SIZE = 16;
/** Size of a structured chunk header. */
export const CHUNK_HEADER_SIZE = 20;

/**
 * The header size of the reply whose first 4 bytes are `magic`: 16 for a
 * simple reply, 20 for a structured chunk; anything else is a protocol error.
 */
export function replyHeaderSize(magic: Uint8Array): number {
  expectSize(magic, 4, "NBD reply magic");
  const value = view(magic).getUint32(0);
  if (value === NBD_SIMPLE_REPLY_MAGIC) return SIMPLE_REPLY_SIZE;
  if (value === NBD_STRUCTURED_REPLY_MAGIC) return CHUNK_HEADER_SIZE;
  throw new NbdProtocolError("NBD_BAD_MAGIC", `bad NBD reply magic ${hex(value)}`);
}

/** A simple reply header. */
export interface SimpleReply {
  /** Error value, 0 for success. */
  error: number;
  /** Cookie of the request answered. */
  cookie: bigint;
}

/**
 * Encodes a simple reply header, followed by `data` when given (reads).
 *
 * @example
 * ```ts
 * import { decodeSimpleReply, encodeSimpleReply } from "./reply.ts";
 * console.log(decodeSimpleReply(encodeSimpleReply({ error: 5, cookie: 9n })).error); // 5
 * ```
 */
export function encodeSimpleReply(reply: SimpleReply, data?: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIMPLE_REPLY_SIZE + (data?.length ?? 0));
  const dv = view(out);
  dv.setUint32(0, NBD_SIMPLE_REPLY_MAGIC);
  dv.setUint32(4, reply.error);
  dv.setBigUint64(8, BigInt.asUintN(64, reply.cookie));
  if (data) out.set(data, SIMPLE_REPLY_SIZE);
  return out;
}

/** Decodes a simple reply header. */
export function decodeSimpleReply(bytes: Uint8Array): SimpleReply {
  expectSize(bytes, SIMPLE_REPLY_SIZE, "NBD simple reply");
  const dv = view(bytes);
  if (dv.getUint32(0) !== NBD_SIMPLE_REPLY_MAGIC) {
    throw new NbdProtocolError("NBD_BAD_MAGIC", `bad NBD simple reply magic`);
  }
  return { error: dv.getUint32(4), cookie: dv.getBigUint64(8) };
}

/** A structured chunk header. */
export interface ChunkHeader {
  /** Chunk flags (`NBD_REPLY_FLAG_DONE`). */
  flags: number;
  /** Chunk type (`NBD_REPLY_TYPE_*`). */
  type: number;
  /** Cookie of the request answered. */
  cookie: bigint;
  /** Payload length. */
  length: number;
}

/** Encodes a structured chunk: header and payload (the header's length is the payload's). */
export function encodeChunk(header: Omit<ChunkHeader, "length">, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(CHUNK_HEADER_SIZE + payload.length);
  const dv = view(out);
  dv.setUint32(0, NBD_STRUCTURED_REPLY_MAGIC);
  dv.setUint16(4, header.flags);
  dv.setUint16(6, header.type);
  dv.setBigUint64(8, BigInt.asUintN(64, header.cookie));
  dv.setUint32(16, payload.length);
  out.set(payload, CHUNK_HEADER_SIZE);
  return out;
}

/** Decodes a structured chunk header. */
export function decodeChunkHeader(bytes: Uint8Array): ChunkHeader {
  expectSize(bytes, CHUNK_HEADER_SIZE, "NBD structured reply chunk");
  const dv = view(bytes);
  if (dv.getUint32(0) !== NBD_STRUCTURED_REPLY_MAGIC) {
    throw new NbdProtocolError("NBD_BAD_MAGIC", `bad NBD structured reply magic`);
  }
  return {
    flags: dv.getUint16(4),
    type: dv.getUint16(6),
    cookie: dv.getBigUint64(8),
    length: dv.getUint32(16),
  };
}

/** One extent of a block-status chunk. */
export interface NbdExtent {
  /** Length in bytes (≠ 0). */
  length: number;
  /** Status flags of the context (`NBD_STATE_*` for `base:allocation`). */
  flags: number;
}

/** The decoded payload of a structured chunk. */
export type ChunkPayload =
  | { type: typeof NBD_REPLY_TYPE_NONE }
  | { type: typeof NBD_REPLY_TYPE_OFFSET_DATA; offset: number; data: Uint8Array }
  | { type: typeof NBD_REPLY_TYPE_OFFSET_HOLE; offset: number; length: number }
  | { type: typeof NBD_REPLY_TYPE_BLOCK_STATUS; contextId: number; extents: NbdExtent[] }
  | { type: typeof NBD_REPLY_TYPE_ERROR; error: number; message: string }
  | { type: typeof NBD_REPLY_TYPE_ERROR_OFFSET; error: number; message: string; offset: number }
  | { type: number; unknown: Uint8Array };

/** Encodes the payload of `NBD_REPLY_TYPE_OFFSET_DATA`. */
export function encodeOffsetData(offset: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + data.length);
  setU64(view(out), 0, offset);
  out.set(data, 8);
  return out;
}

/** Encodes the payload of `NBD_REPLY_TYPE_OFFSET_HOLE`. */
export function encodeOffsetHole(offset: number, length: number): Uint8Array {
  const out = new Uint8Array(12);
  const dv = view(out);
  setU64(dv, 0, offset);
  dv.setUint32(8, length);
  return out;
}

/** Encodes the payload of `NBD_REPLY_TYPE_BLOCK_STATUS`. */
export function encodeBlockStatus(contextId: number, extents: NbdExtent[]): Uint8Array {
  const out = new Uint8Array(4 + 8 * extents.length);
  const dv = view(out);
  dv.setUint32(0, contextId);
  extents.forEach((e, i) => {
    dv.setUint32(4 + 8 * i, e.length);
    dv.setUint32(8 + 8 * i, e.flags);
  });
  return out;
}

/** Encodes the payload of `NBD_REPLY_TYPE_ERROR`, or of `ERROR_OFFSET` when `offset` is given. */
export function encodeErrorChunk(error: number, message: string, offset?: number): Uint8Array {
  const text = utf8(message).subarray(0, 4096);
  const out = new Uint8Array(6 + text.length + (offset === undefined ? 0 : 8));
  const dv = view(out);
  dv.setUint32(0, error);
  dv.setUint16(4, text.length);
  out.set(text, 6);
  if (offset !== undefined) setU64(dv, 6 + text.length, offset);
  return out;
}

/**
 * Decodes a chunk payload by type, checking the fixed lengths and the
 * nonzero fields the spec requires. An unknown type is returned raw: the
 * caller fails the request if bit 15 is set and hangs up otherwise.
 */
export function decodeChunkPayload(type: number, payload: Uint8Array): ChunkPayload {
  const dv = view(payload);
  switch (type) {
    case NBD_REPLY_TYPE_NONE:
      expectSize(payload, 0, "NBD_REPLY_TYPE_NONE payload");
      return { type };
    case NBD_REPLY_TYPE_OFFSET_DATA:
      expectAtLeast(payload, 9, "NBD_REPLY_TYPE_OFFSET_DATA payload");
      return { type, offset: getU64(dv, 0), data: payload.subarray(8) };
    case NBD_REPLY_TYPE_OFFSET_HOLE: {
      expectSize(payload, 12, "NBD_REPLY_TYPE_OFFSET_HOLE payload");
      const length = dv.getUint32(8);
      if (length === 0) throw new NbdProtocolError("NBD_BAD_CHUNK", "NBD hole of length 0");
      return { type, offset: getU64(dv, 0), length };
    }
    case NBD_REPLY_TYPE_BLOCK_STATUS: {
      expectAtLeast(payload, 12, "NBD_REPLY_TYPE_BLOCK_STATUS payload");
      if ((payload.length - 4) % 8 !== 0 || (payload.length - 4) / 8 > NBD_MAX_EXTENTS) {
        throw new NbdProtocolError(
          "NBD_BAD_CHUNK",
          `NBD block status payload of ${payload.length} bytes is not 4 + 8k with k ≤ 2^20`,
        );
      }
      const extents: NbdExtent[] = [];
      for (let at = 4; at < payload.length; at += 8) {
        const length = dv.getUint32(at);
        if (length === 0) throw new NbdProtocolError("NBD_BAD_CHUNK", "NBD extent of length 0");
        extents.push({ length, flags: dv.getUint32(at + 4) });
      }
      return { type, contextId: dv.getUint32(0), extents };
    }
    case NBD_REPLY_TYPE_ERROR:
    case NBD_REPLY_TYPE_ERROR_OFFSET: {
      expectAtLeast(payload, 6, "NBD error chunk payload");
      const error = dv.getUint32(0);
      const length = dv.getUint16(4);
      const tail = type === NBD_REPLY_TYPE_ERROR_OFFSET ? 8 : 0;
      expectSize(payload, 6 + length + tail, "NBD error chunk payload");
      if (error === 0) throw new NbdProtocolError("NBD_BAD_CHUNK", "NBD error chunk with error 0");
      let message: string;
      try {
        message = fromUtf8(payload.subarray(6, 6 + length), "NBD error message");
      } catch {
        message = "(message not UTF-8)";
      }
      if (tail === 0) return { type: NBD_REPLY_TYPE_ERROR, error, message };
      return { type: NBD_REPLY_TYPE_ERROR_OFFSET, error, message, offset: getU64(dv, 6 + length) };
    }
    default:
      return { type, unknown: payload };
  }
}

/** Whether a chunk type is an error chunk (bit 15), known or not. */
export function isErrorChunkType(type: number): boolean {
  return (type & NBD_REPLY_TYPE_ERROR_BIT) !== 0;
}
