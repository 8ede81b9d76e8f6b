/**
 * The numbers of the Network Block Device protocol (fixed newstyle): magics,
 * option and reply codes, flags, commands, error values, and the limits this
 * implementation enforces on bytes that come from a peer.
 *
 * Values follow the NBD specification (`doc/proto.md`); the names are the
 * spec's. qemu 7.2 has no extended headers, so neither has qedstream.
 *
 * @module
 */

/** `NBDMAGIC`: the first 8 bytes of the server greeting. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** `IHAVEOPT`: second 8 bytes of the greeting and the first 8 of every option request. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** The first 8 bytes of every fixed-newstyle option reply. */
export const NBD_REP_MAGIC = 0x0003e889045565a9n;
/** The first 4 bytes of every request. */
export const NBD_REQUEST_MAGIC = 0x25609513;
/** The first 4 bytes of a simple reply. */
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
/** The first 4 bytes of a structured reply chunk. */
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flag: the server speaks fixed newstyle. */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
/** Handshake flag: the server can omit the 124 zero bytes after `NBD_OPT_EXPORT_NAME`. */
export const NBD_FLAG_NO_ZEROES = 1 << 1;
/** Client flag: the client speaks fixed newstyle. */
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
/** Client flag: the client wants no zero padding after `NBD_OPT_EXPORT_NAME`. */
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

/** Option: choose an export and enter transmission (legacy; no error path). */
export const NBD_OPT_EXPORT_NAME = 1;
/** Option: end the negotiation. */
export const NBD_OPT_ABORT = 2;
/** Option: list the exports. */
export const NBD_OPT_LIST = 3;
/** Option: upgrade to TLS (not supported by qedstream). */
export const NBD_OPT_STARTTLS = 5;
/** Option: describe an export without entering transmission. */
export const NBD_OPT_INFO = 6;
/** Option: describe an export and enter transmission. */
export const NBD_OPT_GO = 7;
/** Option: enable structured replies. */
export const NBD_OPT_STRUCTURED_REPLY = 8;
/** Option: list metadata contexts. */
export const NBD_OPT_LIST_META_CONTEXT = 9;
/** Option: select metadata contexts for block status. */
export const NBD_OPT_SET_META_CONTEXT = 10;

/** Option reply: final success. */
export const NBD_REP_ACK = 1;
/** Option reply: one export of `NBD_OPT_LIST`. */
export const NBD_REP_SERVER = 2;
/** Option reply: one piece of export information. */
export const NBD_REP_INFO = 3;
/** Option reply: one selected or listed metadata context. */
export const NBD_REP_META_CONTEXT = 4;
/** Bit 31 marks an option reply as an error. */
export const NBD_REP_FLAG_ERROR = 0x80000000;
/** Option error: unknown option. */
export const NBD_REP_ERR_UNSUP = 0x80000001;
/** Option error: forbidden by policy. */
export const NBD_REP_ERR_POLICY = 0x80000002;
/** Option error: invalid request. */
export const NBD_REP_ERR_INVALID = 0x80000003;
/** Option error: not supported on this platform. */
export const NBD_REP_ERR_PLATFORM = 0x80000004;
/** Option error: TLS required first. */
export const NBD_REP_ERR_TLS_REQD = 0x80000005;
/** Option error: no such export. */
export const NBD_REP_ERR_UNKNOWN = 0x80000006;
/** Option error: the server is shutting down. */
export const NBD_REP_ERR_SHUTDOWN = 0x80000007;
/** Option error: the client must ask for `NBD_INFO_BLOCK_SIZE`. */
export const NBD_REP_ERR_BLOCK_SIZE_REQD = 0x80000008;
/** Option error: request too big. */
export const NBD_REP_ERR_TOO_BIG = 0x80000009;

/** Information type: export size and transmission flags. */
export const NBD_INFO_EXPORT = 0;
/** Information type: canonical export name. */
export const NBD_INFO_NAME = 1;
/** Information type: human-readable description. */
export const NBD_INFO_DESCRIPTION = 2;
/** Information type: minimum, preferred and maximum block sizes. */
export const NBD_INFO_BLOCK_SIZE = 3;

/** Transmission flag: always set. */
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
/** Transmission flag: the export is read-only. */
export const NBD_FLAG_READ_ONLY = 1 << 1;
/** Transmission flag: `NBD_CMD_FLUSH` supported. */
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
/** Transmission flag: `NBD_CMD_FLAG_FUA` supported. */
export const NBD_FLAG_SEND_FUA = 1 << 3;
/** Transmission flag: rotational media hint. */
export const NBD_FLAG_ROTATIONAL = 1 << 4;
/** Transmission flag: `NBD_CMD_TRIM` supported. */
export const NBD_FLAG_SEND_TRIM = 1 << 5;
/** Transmission flag: `NBD_CMD_WRITE_ZEROES` supported. */
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
/** Transmission flag: `NBD_CMD_FLAG_DF` supported. */
export const NBD_FLAG_SEND_DF = 1 << 7;
/** Transmission flag: several connections see one consistent export. */
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
/** Transmission flag: `NBD_CMD_CACHE` understood. */
export const NBD_FLAG_SEND_CACHE = 1 << 10;
/** Transmission flag: `NBD_CMD_FLAG_FAST_ZERO` supported. */
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

/** Command: read. */
export const NBD_CMD_READ = 0;
/** Command: write (carries a payload). */
export const NBD_CMD_WRITE = 1;
/** Command: soft disconnect (no reply). */
export const NBD_CMD_DISC = 2;
/** Command: flush. */
export const NBD_CMD_FLUSH = 3;
/** Command: discard hint. */
export const NBD_CMD_TRIM = 4;
/** Command: prefetch hint. */
export const NBD_CMD_CACHE = 5;
/** Command: write zeroes. */
export const NBD_CMD_WRITE_ZEROES = 6;
/** Command: block status of the selected metadata contexts. */
export const NBD_CMD_BLOCK_STATUS = 7;

/** Command flag: force unit access. */
export const NBD_CMD_FLAG_FUA = 1 << 0;
/** Command flag: write-zeroes must not punch a hole. */
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
/** Command flag: do not fragment a structured read. */
export const NBD_CMD_FLAG_DF = 1 << 2;
/** Command flag: block status with one extent only. */
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
/** Command flag: write-zeroes must be fast or fail with `NBD_ENOTSUP`. */
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

/** Structured reply flag: the last chunk of a reply. */
export const NBD_REPLY_FLAG_DONE = 1 << 0;
/** Chunk type: empty final chunk. */
export const NBD_REPLY_TYPE_NONE = 0;
/** Chunk type: data at an offset. */
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
/** Chunk type: a hole (reads as zeros) at an offset. */
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
/** Chunk type: extents of one metadata context. */
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
/** Chunk type: an error. */
export const NBD_REPLY_TYPE_ERROR = 0x8001;
/** Chunk type: an error at an offset. */
export const NBD_REPLY_TYPE_ERROR_OFFSET = 0x8002;
/** Bit 15 of a chunk type marks an error chunk, even one of an unknown type. */
export const NBD_REPLY_TYPE_ERROR_BIT = 0x8000;

/** `base:allocation` status bit: not allocated. */
export const NBD_STATE_HOLE = 1 << 0;
/** `base:allocation` status bit: reads as zeros. */
export const NBD_STATE_ZERO = 1 << 1;
/** The metadata context that reports holes and zeros. */
export const BASE_ALLOCATION = "base:allocation";

/** Error: operation not permitted (write to a read-only export). */
export const NBD_EPERM = 1;
/** Error: I/O error. */
export const NBD_EIO = 5;
/** Error: out of memory. */
export const NBD_ENOMEM = 12;
/** Error: invalid request. */
export const NBD_EINVAL = 22;
/** Error: no space (write past the end). */
export const NBD_ENOSPC = 28;
/** Error: value too large (a `DF` read that must fragment). */
export const NBD_EOVERFLOW = 75;
/** Error: not supported (fast zero). */
export const NBD_ENOTSUP = 95;
/** Error: the server is shutting down. */
export const NBD_ESHUTDOWN = 108;

/** The IANA port of NBD, used when a URI names none. */
export const NBD_DEFAULT_PORT = 10809;

/** Largest string the spec allows (export names, descriptions, context names). */
export const NBD_MAX_STRING = 4096;
/** Largest option payload accepted from a peer; qemu's own bound is similar. */
export const NBD_MAX_OPTION_LENGTH = 64 * 1024;
/** Largest option reply payload accepted from a peer. */
export const NBD_MAX_OPTION_REPLY_LENGTH = 64 * 1024;
/** Default and largest read/write payload (32 MiB, the spec's "never a denial of service" size). */
export const NBD_MAX_PAYLOAD = 32 * 1024 * 1024;
/** Largest number of extents accepted in one block-status chunk (the spec's 2^20). */
export const NBD_MAX_EXTENTS = 1 << 20;
/** Largest non-data chunk payload accepted (a full block-status chunk). */
export const NBD_MAX_CHUNK_PAYLOAD: number = 4 + 8 * NBD_MAX_EXTENTS;

const OPTION_NAMES: Record<number, string> = {
  [NBD_OPT_EXPORT_NAME]: "NBD_OPT_EXPORT_NAME",
  [NBD_OPT_ABORT]: "NBD_OPT_ABORT",
  [NBD_OPT_LIST]: "NBD_OPT_LIST",
  [NBD_OPT_STARTTLS]: "NBD_OPT_STARTTLS",
  [NBD_OPT_INFO]: "NBD_OPT_INFO",
  [NBD_OPT_GO]: "NBD_OPT_GO",
  [NBD_OPT_STRUCTURED_REPLY]: "NBD_OPT_STRUCTURED_REPLY",
  [NBD_OPT_LIST_META_CONTEXT]: "NBD_OPT_LIST_META_CONTEXT",
  [NBD_OPT_SET_META_CONTEXT]: "NBD_OPT_SET_META_CONTEXT",
};

/** The spec's name of an option code, or `"option N"`. */
export function optionName(option: number): string {
  return OPTION_NAMES[option] ?? `option ${option}`;
}

const REP_ERROR_NAMES: Record<number, string> = {
  [NBD_REP_ERR_UNSUP]: "NBD_REP_ERR_UNSUP",
  [NBD_REP_ERR_POLICY]: "NBD_REP_ERR_POLICY",
  [NBD_REP_ERR_INVALID]: "NBD_REP_ERR_INVALID",
  [NBD_REP_ERR_PLATFORM]: "NBD_REP_ERR_PLATFORM",
  [NBD_REP_ERR_TLS_REQD]: "NBD_REP_ERR_TLS_REQD",
  [NBD_REP_ERR_UNKNOWN]: "NBD_REP_ERR_UNKNOWN",
  [NBD_REP_ERR_SHUTDOWN]: "NBD_REP_ERR_SHUTDOWN",
  [NBD_REP_ERR_BLOCK_SIZE_REQD]: "NBD_REP_ERR_BLOCK_SIZE_REQD",
  [NBD_REP_ERR_TOO_BIG]: "NBD_REP_ERR_TOO_BIG",
};

/** The spec's name of an option error reply type, or `"NBD_REP_ERR_0x…"`. */
export function optionErrorName(type: number): string {
  return REP_ERROR_NAMES[type] ?? `NBD_REP_ERR_0x${type.toString(16)}`;
}

const ERRNO_NAMES: Record<number, string> = {
  [NBD_EPERM]: "NBD_EPERM",
  [NBD_EIO]: "NBD_EIO",
  [NBD_ENOMEM]: "NBD_ENOMEM",
  [NBD_EINVAL]: "NBD_EINVAL",
  [NBD_ENOSPC]: "NBD_ENOSPC",
  [NBD_EOVERFLOW]: "NBD_EOVERFLOW",
  [NBD_ENOTSUP]: "NBD_ENOTSUP",
  [NBD_ESHUTDOWN]: "NBD_ESHUTDOWN",
};

/**
 * The spec's name of an error value. An unknown value is named
 * `NBD_EINVAL`, as the spec tells clients to treat it.
 */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? "NBD_EINVAL";
}

const COMMAND_NAMES = [
  "NBD_CMD_READ",
  "NBD_CMD_WRITE",
  "NBD_CMD_DISC",
  "NBD_CMD_FLUSH",
  "NBD_CMD_TRIM",
  "NBD_CMD_CACHE",
  "NBD_CMD_WRITE_ZEROES",
  "NBD_CMD_BLOCK_STATUS",
];

/** The spec's name of a command type, or `"command N"`. */
export function commandName(type: number): string {
  return COMMAND_NAMES[type] ?? `command ${type}`;
}
