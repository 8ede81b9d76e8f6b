/**
 * Codecs of option replies (server → client during the handshake) and their
 * payloads.
 *
 * ```text
 * option reply header (20 bytes), then `length` bytes of data
 *   0                  8        12     16       20
 *   +------------------+--------+------+--------+-----...
 *   | 0x0003e889045565a9 | option | type | length | data
 *   +------------------+--------+------+--------+-----...
 * NBD_REP_SERVER        u32 name length | name | description (rest)
 * NBD_REP_INFO          u16 info type | payload:
 *   NBD_INFO_EXPORT       u64 size | u16 transmission flags        (12 bytes with the type)
 *   NBD_INFO_NAME         name (rest)
 *   NBD_INFO_DESCRIPTION  description (rest)
 *   NBD_INFO_BLOCK_SIZE   u32 minimum | u32 preferred | u32 maximum (14 bytes with the type)
 * NBD_REP_META_CONTEXT  u32 context id | context name (rest)
 * NBD_REP_ERR_*         optional human-readable message (rest)
 * ```
 *
 * Limits for untrusted input: reply data ≤
 * {@linkcode NBD_MAX_OPTION_REPLY_LENGTH}; strings ≤ {@linkcode NBD_MAX_STRING}.
 *
 * @module
 */

import { expectAtLeast, expectSize, fromUtf8, getU64, hex, setU64, utf8, view } from "./_bytes.ts";
import { NbdProtocolError } from "./error.ts";
import { checkSize, type ExportSizeAndFlags } from "./handshake.ts";
import {
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAX_OPTION_REPLY_LENGTH,
  NBD_MAX_STRING,
  NBD_REP_MAGIC,
} from "./protocol.ts";

/** Size of an option reply header. */
export const OPTION_REPLY_HEADER_SIZE = 20;

/** The header of an option reply. */
export interface OptionReplyHeader {
  /** The option being answered. */
  option: number;
  /** Reply type (`NBD_REP_*`). */
  type: number;
  /** Length of the data that follows. */
  length: number;
}

/**
 * Encodes an option reply, header and data.
 *
 * @example
 * ```ts
 * import { decodeOptionReplyHeader, encodeOptionReply } from "./option_reply.ts";
 * import { NBD_OPT_GO, NBD_REP_ACK } from "./protocol.ts";
 * const bytes = encodeOptionReply(NBD_OPT_GO, NBD_REP_ACK);
 * console.log(decodeOptionReplyHeader(bytes)); // { option: 7, type: 1, length: 0 }
 * ```
 */
export function encodeOptionReply(
  option: number,
  type: number,
  data: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const out = new Uint8Array(OPTION_REPLY_HEADER_SIZE + data.length);
  const dv = view(out);
  dv.setBigUint64(0, NBD_REP_MAGIC);
  dv.setUint32(8, option);
  dv.setUint32(12, type);
  dv.setUint32(16, data.length);
  out.set(data, OPTION_REPLY_HEADER_SIZE);
  return out;
}

/** Decodes an option reply header; rejects a bad magic and data over the limit. */
export function decodeOptionReplyHeader(bytes: Uint8Array): OptionReplyHeader {
  expectSize(bytes, OPTION_REPLY_HEADER_SIZE, "NBD option reply header");
  const dv = view(bytes);
  const magic = dv.getBigUint64(0);
  if (magic !== NBD_REP_MAGIC) {
    throw new NbdProtocolError("NBD_BAD_MAGIC", `bad NBD option reply magic ${hex(magic)}`);
  }
  const header = { option: dv.getUint32(8), type: dv.getUint32(12), length: dv.getUint32(16) };
  if (header.length > NBD_MAX_OPTION_REPLY_LENGTH) {
    throw new NbdProtocolError(
      "NBD_OPTION_REPLY_TOO_LONG",
      `NBD option reply carries ${header.length} bytes, more than ${NBD_MAX_OPTION_REPLY_LENGTH}`,
    );
  }
  return header;
}

function boundedString(bytes: Uint8Array, what: string): string {
  if (bytes.length > NBD_MAX_STRING) {
    throw new NbdProtocolError(
      "NBD_STRING_TOO_LONG",
      `${what} is ${bytes.length} bytes, more than ${NBD_MAX_STRING}`,
    );
  }
  return fromUtf8(bytes, what);
}

/** One export listed by `NBD_OPT_LIST`. */
export interface ServerReply {
  /** Export name. */
  name: string;
  /** Description, empty when none. */
  description: string;
}

/** Encodes the data of `NBD_REP_SERVER`. */
export function encodeServerReply(reply: ServerReply): Uint8Array {
  const name = utf8(reply.name);
  const description = utf8(reply.description);
  const out = new Uint8Array(4 + name.length + description.length);
  view(out).setUint32(0, name.length);
  out.set(name, 4);
  out.set(description, 4 + name.length);
  return out;
}

/** Decodes the data of `NBD_REP_SERVER`. */
export function decodeServerReply(bytes: Uint8Array): ServerReply {
  expectAtLeast(bytes, 4, "NBD_REP_SERVER data");
  const length = view(bytes).getUint32(0);
  if (length > bytes.length - 4) {
    throw new NbdProtocolError(
      "NBD_BAD_LENGTH",
      `NBD_REP_SERVER name of ${length} bytes runs past its ${bytes.length}-byte reply`,
    );
  }
  return {
    name: boundedString(bytes.subarray(4, 4 + length), "NBD export name"),
    description: boundedString(bytes.subarray(4 + length), "NBD export description"),
  };
}

/** One `NBD_REP_INFO` payload. Unknown types are kept as raw bytes (clients must ignore them). */
export type InfoReply =
  | ({ type: typeof NBD_INFO_EXPORT } & ExportSizeAndFlags)
  | { type: typeof NBD_INFO_NAME; name: string }
  | { type: typeof NBD_INFO_DESCRIPTION; description: string }
  | { type: typeof NBD_INFO_BLOCK_SIZE; minimum: number; preferred: number; maximum: number }
  | { type: number; unknown: Uint8Array };

/** Encodes the data of `NBD_REP_INFO`. */
export function encodeInfoReply(info: InfoReply): Uint8Array {
  if ("unknown" in info) {
    const out = new Uint8Array(2 + info.unknown.length);
    view(out).setUint16(0, info.type);
    out.set(info.unknown, 2);
    return out;
  }
  switch (info.type) {
    case NBD_INFO_EXPORT: {
      const i = info as ExportSizeAndFlags;
      const out = new Uint8Array(12);
      const dv = view(out);
      dv.setUint16(0, NBD_INFO_EXPORT);
      setU64(dv, 2, i.size);
      dv.setUint16(10, i.flags);
      return out;
    }
    case NBD_INFO_BLOCK_SIZE: {
      const i = info as { minimum: number; preferred: number; maximum: number };
      const out = new Uint8Array(14);
      const dv = view(out);
      dv.setUint16(0, NBD_INFO_BLOCK_SIZE);
      dv.setUint32(2, i.minimum);
      dv.setUint32(6, i.preferred);
      dv.setUint32(10, i.maximum);
      return out;
    }
    default: {
      const text = utf8(
        info.type === NBD_INFO_NAME
          ? (info as { name: string }).name
          : (info as { description: string }).description,
      );
      const out = new Uint8Array(2 + text.length);
      view(out).setUint16(0, info.type);
      out.set(text, 2);
      return out;
    }
  }
}

/** Decodes the data of `NBD_REP_INFO`; checks the fixed lengths of known types. */
export function decodeInfoReply(bytes: Uint8Array): InfoReply {
  expectAtLeast(bytes, 2, "NBD_REP_INFO data");
  const dv = view(bytes);
  const type = dv.getUint16(0);
  switch (type) {
    case NBD_INFO_EXPORT:
      expectSize(bytes, 12, "NBD_INFO_EXPORT");
      return { type, size: checkSize(getU64(dv, 2)), flags: dv.getUint16(10) };
    case NBD_INFO_NAME:
      return { type, name: boundedString(bytes.subarray(2), "NBD_INFO_NAME") };
    case NBD_INFO_DESCRIPTION:
      return { type, description: boundedString(bytes.subarray(2), "NBD_INFO_DESCRIPTION") };
    case NBD_INFO_BLOCK_SIZE:
      expectSize(bytes, 14, "NBD_INFO_BLOCK_SIZE");
      return {
        type,
        minimum: dv.getUint32(2),
        preferred: dv.getUint32(6),
        maximum: dv.getUint32(10),
      };
    default:
      return { type, unknown: bytes.slice(2) };
  }
}

/** One `NBD_REP_META_CONTEXT` payload. */
export interface MetaContextReply {
  /** Context id to match in block-status chunks (transient, per connection). */
  id: number;
  /** Context name such as `"base:allocation"`. */
  name: string;
}

/** Encodes the data of `NBD_REP_META_CONTEXT`. */
export function encodeMetaContextReply(reply: MetaContextReply): Uint8Array {
  const name = utf8(reply.name);
  const out = new Uint8Array(4 + name.length);
  view(out).setUint32(0, reply.id);
  out.set(name, 4);
  return out;
}

/** Decodes the data of `NBD_REP_META_CONTEXT`. */
export function decodeMetaContextReply(bytes: Uint8Array): MetaContextReply {
  expectAtLeast(bytes, 4, "NBD_REP_META_CONTEXT data");
  return {
    id: view(bytes).getUint32(0),
    name: boundedString(bytes.subarray(4), "NBD meta context name"),
  };
}
