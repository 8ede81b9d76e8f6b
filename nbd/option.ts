/**
 * Codecs of option requests (client → server during the handshake) and of
 * the payloads of the options qedstream speaks.
 *
 * ```text
 * option request header (16 bytes), then `length` bytes of data
 *   0          8        12       16
 *   +----------+--------+--------+------...
 *   | IHAVEOPT | option | length | data
 *   +----------+--------+--------+------...
 * NBD_OPT_INFO / NBD_OPT_GO data
 *   u32 name length | name | u16 n | n × u16 information type
 * NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data
 *   u32 name length | name | u32 n | n × (u32 length | query)
 * NBD_OPT_EXPORT_NAME data: the export name (no length field)
 * ```
 *
 * Limits for untrusted input: option data ≤ {@linkcode NBD_MAX_OPTION_LENGTH},
 * names and queries ≤ {@linkcode NBD_MAX_STRING} bytes of UTF-8.
 *
 * @module
 */

import { checkU32, expectAtLeast, expectSize, fromUtf8, hex, utf8, view } from "./_bytes.ts";
import { NbdProtocolError } from "./error.ts";
import { NBD_MAX_OPTION_LENGTH, NBD_MAX_STRING, NBD_OPTS_MAGIC } from "./protocol.ts";

/** Size of an option request header. */
export const OPTION_HEADER_SIZE = 16;

/** The header of an option request. */
export interface OptionHeader {
  /** Option code (`NBD_OPT_*`). */
  option: number;
  /** Length of the data that follows. */
  length: number;
}

/**
 * Encodes an option request, header and data.
 *
 * @example
 * ```ts
 * import { decodeOptionHeader, encodeOption } from "./option.ts";
 * import { NBD_OPT_ABORT } from "./protocol.ts";
 * const bytes = encodeOption(NBD_OPT_ABORT);
 * console.log(decodeOptionHeader(bytes.subarray(0, 16))); // { option: 2, length: 0 }
 * ```
 */
export function encodeOption(option: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  checkU32(option, "NBD option code");
  const out = new Uint8Array(OPTION_HEADER_SIZE + data.length);
  const dv = view(out);
  dv.setBigUint64(0, NBD_OPTS_MAGIC);
  dv.setUint32(8, option);
  dv.setUint32(12, data.length);
  out.set(data, OPTION_HEADER_SIZE);
  return out;
}

/** Decodes an option request header; rejects a bad magic and data over the limit. */
export function decodeOptionHeader(bytes: Uint8Array): OptionHeader {
  expectSize(bytes, OPTION_HEADER_SIZE, "NBD option header");
  const dv = view(bytes);
  const magic = dv.getBigUint64(0);
  if (magic !== NBD_OPTS_MAGIC) {
    throw new NbdProtocolError("NBD_BAD_MAGIC", `bad NBD option magic ${hex(magic)}`);
  }
  const option = dv.getUint32(8);
  const length = dv.getUint32(12);
  if (length > NBD_MAX_OPTION_LENGTH) {
    throw new NbdProtocolError(
      "NBD_OPTION_TOO_LONG",
      `NBD option ${option} carries ${length} bytes, more than ${NBD_MAX_OPTION_LENGTH}`,
    );
  }
  return { option, length };
}

/** The data of `NBD_OPT_INFO` and `NBD_OPT_GO`. */
export interface ExportRequest {
  /** Export name; empty means the default export. */
  name: string;
  /** Information types asked for (`NBD_INFO_*`). */
  infoRequests: number[];
}

function encodeName(name: string): Uint8Array {
  const bytes = utf8(name);
  if (bytes.length > NBD_MAX_STRING) {
    throw new RangeError(`NBD export name is ${bytes.length} bytes, more than ${NBD_MAX_STRING}`);
  }
  return bytes;
}

/** Encodes the data of `NBD_OPT_INFO` / `NBD_OPT_GO`. */
export function encodeExportRequest(request: ExportRequest): Uint8Array {
  const name = encodeName(request.name);
  const out = new Uint8Array(4 + name.length + 2 + 2 * request.infoRequests.length);
  const dv = view(out);
  dv.setUint32(0, name.length);
  out.set(name, 4);
  dv.setUint16(4 + name.length, request.infoRequests.length);
  request.infoRequests.forEach((t, i) => dv.setUint16(6 + name.length + 2 * i, t));
  return out;
}

/** Reads a u32-length-prefixed string at `at`; returns it and the offset after it. */
function readString(bytes: Uint8Array, at: number, what: string): [string, number] {
  expectAtLeast(bytes, at + 4, what);
  const length = view(bytes).getUint32(at);
  if (length > NBD_MAX_STRING) {
    throw new NbdProtocolError(
      "NBD_STRING_TOO_LONG",
      `${what} is ${length} bytes, more than ${NBD_MAX_STRING}`,
    );
  }
  if (at + 4 + length > bytes.length) {
    throw new NbdProtocolError(
      "NBD_BAD_LENGTH",
      `${what} of ${length} bytes runs past the end of the option data`,
    );
  }
  return [fromUtf8(bytes.subarray(at + 4, at + 4 + length), what), at + 4 + length];
}

/** Decodes the data of `NBD_OPT_INFO` / `NBD_OPT_GO`. */
export function decodeExportRequest(bytes: Uint8Array): ExportRequest {
  const [name, at] = readString(bytes, 0, "NBD export name");
  expectAtLeast(bytes, at + 2, "NBD_OPT_GO data");
  const count = view(bytes).getUint16(at);
  expectSize(bytes, at + 2 + 2 * count, "NBD_OPT_GO data");
  const infoRequests: number[] = [];
  for (let i = 0; i < count; i++) infoRequests.push(view(bytes).getUint16(at + 2 + 2 * i));
  return { name, infoRequests };
}

/** The data of `NBD_OPT_LIST_META_CONTEXT` and `NBD_OPT_SET_META_CONTEXT`. */
export interface MetaContextRequest {
  /** Export name. */
  name: string;
  /** Queries such as `"base:allocation"`. */
  queries: string[];
}

/** Encodes the data of the meta-context options. */
export function encodeMetaContextRequest(request: MetaContextRequest): Uint8Array {
  const name = encodeName(request.name);
  const queries = request.queries.map((q) => encodeName(q));
  const out = new Uint8Array(
    4 + name.length + 4 + queries.reduce((sum, q) => sum + 4 + q.length, 0),
  );
  const dv = view(out);
  dv.setUint32(0, name.length);
  out.set(name, 4);
  let at = 4 + name.length;
  dv.setUint32(at, queries.length);
  at += 4;
  for (const q of queries) {
    dv.setUint32(at, q.length);
    out.set(q, at + 4);
    at += 4 + q.length;
  }
  return out;
}

/** Decodes the data of the meta-context options. */
export function decodeMetaContextRequest(bytes: Uint8Array): MetaContextRequest {
  let [name, at] = readString(bytes, 0, "NBD export name");
  expectAtLeast(bytes, at + 4, "NBD meta context data");
  const count = view(bytes).getUint32(at);
  at += 4;
  // Each query takes at least 4 bytes, so a count beyond that is a lie.
  if (count > (bytes.length - at) / 4) {
    throw new NbdProtocolError(
      "NBD_BAD_LENGTH",
      `NBD meta context request claims ${count} queries in ${bytes.length - at} bytes`,
    );
  }
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    let query: string;
    [query, at] = readString(bytes, at, "NBD meta context query");
    queries.push(query);
  }
  expectSize(bytes, at, "NBD meta context data");
  return { name, queries };
}

/** Encodes the data of `NBD_OPT_EXPORT_NAME`. */
export function encodeExportName(name: string): Uint8Array {
  return encodeName(name);
}

/** Decodes the data of `NBD_OPT_EXPORT_NAME`. */
export function decodeExportName(bytes: Uint8Array): string {
  if (bytes.length > NBD_MAX_STRING) {
    throw new NbdProtocolError(
      "NBD_STRING_TOO_LONG",
      `NBD export name is ${bytes.length} bytes, more than ${NBD_MAX_STRING}`,
    );
  }
  return fromUtf8(bytes, "NBD export name");
}
