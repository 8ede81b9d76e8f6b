/**
 * The client side of the fixed-newstyle handshake: greeting, structured
 * replies, the `base:allocation` meta context, then `NBD_OPT_GO` with
 * `NBD_INFO_BLOCK_SIZE`, falling back to `NBD_OPT_EXPORT_NAME` when the
 * server answers `NBD_REP_ERR_UNSUP` (as old servers do). Also
 * `NBD_OPT_LIST` and `NBD_OPT_ABORT`.
 *
 * One option is in flight at a time, as the spec requires.
 *
 * @module
 */

import { NbdOptionError, NbdProtocolError } from "./error.ts";
import {
  decodeExportNameReply,
  decodeGreeting,
  encodeClientFlags,
  EXPORT_NAME_PADDING,
  EXPORT_NAME_REPLY_SIZE,
  GREETING_SIZE,
} from "./handshake.ts";
import {
  encodeExportName,
  encodeExportRequest,
  encodeMetaContextRequest,
  encodeOption,
} from "./option.ts";
import {
  decodeInfoReply,
  decodeMetaContextReply,
  decodeOptionReplyHeader,
  decodeServerReply,
  OPTION_REPLY_HEADER_SIZE,
  type ServerReply,
} from "./option_reply.ts";
import {
  BASE_ALLOCATION,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAX_PAYLOAD,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_UNSUP,
  NBD_REP_FLAG_ERROR,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  optionErrorName,
  optionName,
} from "./protocol.ts";
import type { StreamReader, StreamWriter } from "./stream.ts";
import { fromUtf8 } from "./_bytes.ts";

/** What the handshake learned about the export and the connection. */
export interface NbdExportInfo {
  /** Export size in bytes. */
  size: number;
  /** Transmission flags (`NBD_FLAG_*`). */
  flags: number;
  /** Minimum block size: offsets and lengths are multiples of it (1 when not advertised). */
  minimumBlock: number;
  /** Preferred block size (4096 when not advertised). */
  preferredBlock: number;
  /** Largest read or write payload (32 MiB when not advertised or larger). */
  maximumPayload: number;
  /** Whether structured replies were negotiated. */
  structuredReplies: boolean;
  /** Context id of `base:allocation`, or `null` when block status is unavailable. */
  baseAllocationId: number | null;
  /** Canonical name, when the server sent one. */
  name?: string;
  /** Description, when the server sent one. */
  description?: string;
  /** Whether the export was entered with the `NBD_OPT_EXPORT_NAME` fallback. */
  viaExportName: boolean;
}

/** What to ask for during the handshake. */
export interface NegotiateOptions {
  /** Export name; empty means the server's default export. */
  exportName: string;
  /** Negotiate structured replies (default `true`). */
  structuredReplies?: boolean;
  /** Select `base:allocation` for block status (default `true`; needs structured replies). */
  blockStatus?: boolean;
}

interface RawOptionReply {
  type: number;
  data: Uint8Array;
}

async function sendOption(writer: StreamWriter, option: number, data?: Uint8Array): Promise<void> {
  await writer.write(encodeOption(option, data));
}

async function readOptionReply(reader: StreamReader, option: number): Promise<RawOptionReply> {
  const header = decodeOptionReplyHeader(await reader.readExact(OPTION_REPLY_HEADER_SIZE));
  if (header.option !== option) {
    throw new NbdProtocolError(
      "NBD_UNEXPECTED_REPLY",
      `NBD server answered ${optionName(header.option)} to ${optionName(option)}`,
    );
  }
  return { type: header.type, data: await reader.readExact(header.length) };
}

function optionError(option: number, reply: RawOptionReply, what: string): NbdOptionError {
  const code = optionErrorName(reply.type);
  let said = "";
  try {
    said = fromUtf8(reply.data, "NBD error message");
  } catch {
    // A message that is not UTF-8 is dropped.
  }
  return new NbdOptionError(
    code,
    `${what}: server answered ${optionName(option)} with ${code}${said ? `: ${said}` : ""}`,
  );
}

function isError(type: number): boolean {
  return type >= NBD_REP_FLAG_ERROR;
}

/** Reads the greeting and sends the client flags; returns whether zero padding is omitted. */
async function greet(reader: StreamReader, writer: StreamWriter): Promise<boolean> {
  const flags = decodeGreeting(await reader.readExact(GREETING_SIZE));
  if (!(flags & NBD_FLAG_FIXED_NEWSTYLE)) {
    throw new NbdProtocolError(
      "NBD_NOT_FIXED_NEWSTYLE",
      "NBD server does not support fixed newstyle negotiation",
    );
  }
  const noZeroes = (flags & NBD_FLAG_NO_ZEROES) !== 0;
  await writer.write(
    encodeClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | (noZeroes ? NBD_FLAG_C_NO_ZEROES : 0)),
  );
  return noZeroes;
}

/** Sends an option that has only `ACK` or an error as replies; returns whether it was acknowledged. */
async function simpleOption(
  reader: StreamReader,
  writer: StreamWriter,
  option: number,
): Promise<boolean> {
  await sendOption(writer, option);
  const reply = await readOptionReply(reader, option);
  if (reply.type === NBD_REP_ACK) return true;
  if (isError(reply.type)) return false;
  throw new NbdProtocolError(
    "NBD_UNEXPECTED_REPLY",
    `NBD server sent reply type ${reply.type} to ${optionName(option)}`,
  );
}

/**
 * Runs the client handshake up to the transmission phase.
 *
 * @example
 * ```ts ignore
 * const info = await negotiate(reader, writer, { exportName: "exp" });
 * console.log(info.size, info.baseAllocationId !== null);
 * ```
 */
export async function negotiate(
  reader: StreamReader,
  writer: StreamWriter,
  options: NegotiateOptions,
): Promise<NbdExportInfo> {
  const noZeroes = await greet(reader, writer);
  const structuredReplies = options.structuredReplies !== false &&
    await simpleOption(reader, writer, NBD_OPT_STRUCTURED_REPLY);

  let baseAllocationId: number | null = null;
  if (structuredReplies && options.blockStatus !== false) {
    await sendOption(
      writer,
      NBD_OPT_SET_META_CONTEXT,
      encodeMetaContextRequest({ name: options.exportName, queries: [BASE_ALLOCATION] }),
    );
    for (;;) {
      const reply = await readOptionReply(reader, NBD_OPT_SET_META_CONTEXT);
      if (reply.type === NBD_REP_META_CONTEXT) {
        const context = decodeMetaContextReply(reply.data);
        if (context.name === BASE_ALLOCATION) baseAllocationId = context.id;
        continue;
      }
      if (reply.type === NBD_REP_ACK) break;
      if (isError(reply.type)) {
        // No block status then; reads still work.
        baseAllocationId = null;
        break;
      }
      throw new NbdProtocolError(
        "NBD_UNEXPECTED_REPLY",
        `NBD server sent reply type ${reply.type} to NBD_OPT_SET_META_CONTEXT`,
      );
    }
  }

  await sendOption(
    writer,
    NBD_OPT_GO,
    encodeExportRequest({ name: options.exportName, infoRequests: [NBD_INFO_BLOCK_SIZE] }),
  );
  const info: NbdExportInfo = {
    size: -1,
    flags: 0,
    minimumBlock: 1,
    preferredBlock: 4096,
    maximumPayload: NBD_MAX_PAYLOAD,
    structuredReplies,
    baseAllocationId,
    viaExportName: false,
  };
  for (;;) {
    const reply = await readOptionReply(reader, NBD_OPT_GO);
    if (reply.type === NBD_REP_INFO) {
      const item = decodeInfoReply(reply.data);
      if ("unknown" in item) continue; // clients ignore unknown information types
      if (item.type === NBD_INFO_EXPORT && "size" in item) {
        info.size = item.size;
        info.flags = item.flags;
      } else if (item.type === NBD_INFO_BLOCK_SIZE && "minimum" in item) {
        checkBlockSizes(item.minimum, item.preferred, item.maximum);
        info.minimumBlock = item.minimum;
        info.preferredBlock = item.preferred;
        info.maximumPayload = Math.min(item.maximum, NBD_MAX_PAYLOAD);
      } else if (item.type === NBD_INFO_NAME && "name" in item) {
        info.name = item.name;
      } else if (item.type === NBD_INFO_DESCRIPTION && "description" in item) {
        info.description = item.description;
      }
      continue;
    }
    if (reply.type === NBD_REP_ACK) {
      if (info.size < 0) {
        throw new NbdProtocolError(
          "NBD_NO_EXPORT_INFO",
          "NBD server acknowledged NBD_OPT_GO without sending NBD_INFO_EXPORT",
        );
      }
      return info;
    }
    if (reply.type === NBD_REP_ERR_UNSUP) break;
    if (isError(reply.type)) {
      throw optionError(
        NBD_OPT_GO,
        reply,
        `Requested export '${options.exportName}' not available`,
      );
    }
    throw new NbdProtocolError(
      "NBD_UNEXPECTED_REPLY",
      `NBD server sent reply type ${reply.type} to NBD_OPT_GO`,
    );
  }

  // Fallback for servers without NBD_OPT_GO: no error path, a refusal is a hang-up.
  await sendOption(writer, NBD_OPT_EXPORT_NAME, encodeExportName(options.exportName));
  const head = await reader.read(EXPORT_NAME_REPLY_SIZE, true);
  if (!head) {
    throw new NbdOptionError(
      "NBD_REP_ERR_UNKNOWN",
      `Requested export '${options.exportName}' not available: server closed the connection`,
    );
  }
  const { size, flags } = decodeExportNameReply(head);
  if (!noZeroes) await reader.skip(EXPORT_NAME_PADDING);
  return { ...info, size, flags, viaExportName: true };
}

/** Checks advertised block sizes against the spec's rules. */
export function checkBlockSizes(minimum: number, preferred: number, maximum: number): void {
  const pow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;
  if (
    !pow2(minimum) || minimum > 65536 || !pow2(preferred) || preferred < minimum ||
    (maximum !== 0xffffffff && (maximum < minimum || maximum % minimum !== 0))
  ) {
    throw new NbdProtocolError(
      "NBD_BAD_BLOCK_SIZE",
      `NBD server advertised impossible block sizes: minimum ${minimum}, preferred ${preferred}, maximum ${maximum}`,
    );
  }
}

/** Runs `NBD_OPT_LIST` after the greeting and ends with `NBD_OPT_ABORT`. */
export async function negotiateList(
  reader: StreamReader,
  writer: StreamWriter,
): Promise<ServerReply[]> {
  await greet(reader, writer);
  await sendOption(writer, NBD_OPT_LIST);
  const exports: ServerReply[] = [];
  for (;;) {
    const reply = await readOptionReply(reader, NBD_OPT_LIST);
    if (reply.type === NBD_REP_SERVER) {
      exports.push(decodeServerReply(reply.data));
      if (exports.length > 65536) {
        throw new NbdProtocolError("NBD_TOO_MANY_EXPORTS", "NBD server lists too many exports");
      }
      continue;
    }
    if (reply.type === NBD_REP_ACK) break;
    if (isError(reply.type)) throw optionError(NBD_OPT_LIST, reply, "Cannot list exports");
    throw new NbdProtocolError(
      "NBD_UNEXPECTED_REPLY",
      `NBD server sent reply type ${reply.type} to NBD_OPT_LIST`,
    );
  }
  await abortHandshake(reader, writer);
  return exports;
}

/** Sends `NBD_OPT_ABORT` and waits for the `ACK`, tolerating a hang-up instead. */
export async function abortHandshake(reader: StreamReader, writer: StreamWriter): Promise<void> {
  try {
    await sendOption(writer, NBD_OPT_ABORT);
    await readOptionReply(reader, NBD_OPT_ABORT);
  } catch {
    // The spec lets the server close instead of acknowledging.
  }
}
