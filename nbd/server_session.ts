/**
 * One client connection of an {@linkcode NbdServer}: the server side of the
 * fixed-newstyle handshake, then the transmission phase.
 *
 * Every input is bounded: option data ≤ 64 KiB, at most `maxOptions`
 * options and `handshakeTimeout` ms before transmission, write payloads ≤
 * the export's maximum payload (larger ones are a protocol violation and end
 * the connection, since their bytes cannot be trusted to be skipped), and at
 * most `maxInFlight` requests and `maxInFlightBytes` of payload at once: the
 * session stops reading while that much is being served. Bad requests get an error reply; bad framing (a
 * wrong magic, a truncated message) closes the connection. Nothing a client
 * sends can throw out of {@linkcode ServerSession.run}.
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";
import { NbdProtocolError } from "./error.ts";
import type { NbdExportOptions } from "./export.ts";
import {
  CLIENT_FLAGS_SIZE,
  decodeClientFlags,
  encodeExportNameReply,
  encodeGreeting,
} from "./handshake.ts";
import {
  decodeExportName,
  decodeExportRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  OPTION_HEADER_SIZE,
} from "./option.ts";
import {
  encodeInfoReply,
  encodeMetaContextReply,
  encodeOptionReply,
  encodeServerReply,
} from "./option_reply.ts";
import {
  BASE_ALLOCATION,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAX_PAYLOAD,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
} from "./protocol.ts";
import {
  encodeBlockStatus,
  encodeChunk,
  encodeErrorChunk,
  encodeOffsetHole,
  encodeSimpleReply,
  type NbdExtent,
} from "./reply.ts";
import { decodeRequestHeader, type NbdRequest, REQUEST_HEADER_SIZE } from "./request.ts";
import { type NbdStream, StreamReader, StreamWriter } from "./stream.ts";
import { setU64, view } from "./_bytes.ts";

/** Limits and wiring a session gets from its server. */
export interface ServerSessionOptions {
  /** Clock for the handshake timeout. */
  clock: Clock;
  /** Looks an export up by name. */
  lookup(name: string): NbdExportOptions | undefined;
  /** All exports, for `NBD_OPT_LIST`. */
  list(): NbdExportOptions[];
  /** Requests served at once per connection. */
  maxInFlight: number;
  /** Time allowed from connection to transmission. */
  handshakeTimeout: number;
  /** Options allowed before transmission. */
  maxOptions: number;
  /** Read and write payload bytes held at once (one request may always run alone). */
  maxInFlightBytes: number;
}

/** The context id qedstream gives `base:allocation` (qemu uses 0 too). */
const BASE_ALLOCATION_ID = 0;
/** Most extents in one block-status reply; clients re-query for the rest. */
const MAX_REPLY_EXTENTS = 1024;
/** Most hole/data chunks in one read reply; past that the rest goes as one data chunk. */
const MAX_READ_CHUNKS = 64;
/** Holes shorter than this are sent as data: a chunk header costs more than the zeros. */
const MIN_HOLE = 4096;

/** Flags each command accepts. */
const ALLOWED_FLAGS: Record<number, number> = {
  [NBD_CMD_READ]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF,
  [NBD_CMD_WRITE]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_FLUSH]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_TRIM]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_CACHE]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_WRITE_ZEROES]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE,
  [NBD_CMD_BLOCK_STATUS]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE,
};

/** The transmission flags of an export, as qemu-nbd sets them (plus multi-conn: one shared target). */
export function transmissionFlags(exp: NbdExportOptions): number {
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_DF |
    NBD_FLAG_CAN_MULTI_CONN;
  if (exp.readOnly) flags |= NBD_FLAG_READ_ONLY;
  else flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
  return flags;
}

class Refused extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

/** One connection being served. */
export class ServerSession {
  readonly #stream: NbdStream;
  readonly #reader: StreamReader;
  readonly #writer: StreamWriter;
  readonly #options: ServerSessionOptions;
  #structured = false;
  #noZeroes = false;
  /** Export named by the last successful `NBD_OPT_SET_META_CONTEXT` that selected base:allocation. */
  #metaExport: string | null = null;
  #export: NbdExportOptions | null = null;
  #inFlight = 0;
  #inFlightBytes = 0;
  #waiters: (() => void)[] = [];
  #closed = false;
  #shuttingDown = false;

  /** Wraps an accepted connection. */
  constructor(stream: NbdStream, options: ServerSessionOptions) {
    this.#stream = stream;
    this.#reader = new StreamReader(stream);
    this.#writer = new StreamWriter(stream);
    this.#options = options;
  }

  /** Serves the connection to its end; never rejects. */
  async run(): Promise<void> {
    try {
      if (await this.#handshake()) await this.#transmission();
    } catch {
      // A broken or hostile peer: hang up (the spec's hard disconnect).
    } finally {
      this.close();
    }
  }

  /** Hangs up now. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stream.close();
    this.#wake();
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Stops taking requests, lets those in flight finish, then hangs up. */
  async shutdown(): Promise<void> {
    this.#shuttingDown = true;
    while (this.#inFlight > 0 && !this.#closed) {
      await new Promise<void>((r) => this.#waiters.push(r));
    }
    this.close();
  }

  // --- handshake ---------------------------------------------------------------------

  /** Returns `true` once an export is chosen for transmission. */
  async #handshake(): Promise<boolean> {
    const timer = new AbortController();
    this.#options.clock.sleep(this.#options.handshakeTimeout, timer.signal).then(
      () => this.close(),
      () => {},
    );
    try {
      await this.#writer.write(encodeGreeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
      const head = await this.#reader.read(CLIENT_FLAGS_SIZE, true);
      if (!head) return false;
      const flags = decodeClientFlags(head);
      // Unknown client flags end the connection, as the spec requires. A client without
      // C_FIXED_NEWSTYLE is served as if it had set it (deviation: no non-fixed newstyle).
      if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) return false;
      this.#noZeroes = (flags & NBD_FLAG_C_NO_ZEROES) !== 0;
      for (let n = 0; n < this.#options.maxOptions; n++) {
        const bytes = await this.#reader.read(OPTION_HEADER_SIZE, true);
        if (!bytes) return false;
        const { option, length } = decodeOptionHeader(bytes);
        const data = await this.#reader.readExact(length);
        const done = await this.#option(option, data);
        if (done !== null) return done;
      }
      return false;
    } finally {
      timer.abort();
    }
  }

  #reply(option: number, type: number, data?: Uint8Array): Promise<void> {
    return this.#writer.write(encodeOptionReply(option, type, data));
  }

  #replyError(option: number, type: number, message: string): Promise<void> {
    return this.#reply(option, type, new TextEncoder().encode(message));
  }

  /** Handles one option: `true` enters transmission, `false` ends the connection, `null` goes on. */
  async #option(option: number, data: Uint8Array): Promise<boolean | null> {
    switch (option) {
      case NBD_OPT_EXPORT_NAME: {
        let exp: NbdExportOptions | undefined;
        try {
          exp = this.#options.lookup(decodeExportName(data));
        } catch {
          return false;
        }
        if (!exp) return false; // no error path: the spec says hang up
        await this.#writer.write(
          encodeExportNameReply(
            { size: exp.target.size, flags: transmissionFlags(exp) },
            this.#noZeroes,
          ),
        );
        this.#export = exp;
        return true;
      }
      case NBD_OPT_ABORT:
        await this.#reply(option, NBD_REP_ACK).catch(() => {});
        return false;
      case NBD_OPT_LIST:
        if (data.length !== 0) {
          await this.#replyError(option, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
          return null;
        }
        for (const exp of this.#options.list()) {
          await this.#reply(
            option,
            NBD_REP_SERVER,
            encodeServerReply({ name: exp.name, description: exp.description ?? "" }),
          );
        }
        await this.#reply(option, NBD_REP_ACK);
        return null;
      case NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) {
          await this.#replyError(option, NBD_REP_ERR_INVALID, "option takes no data");
        } else if (this.#structured) {
          await this.#replyError(option, NBD_REP_ERR_INVALID, "structured replies already on");
        } else {
          this.#structured = true;
          await this.#reply(option, NBD_REP_ACK);
        }
        return null;
      case NBD_OPT_INFO:
      case NBD_OPT_GO:
        return await this.#infoOrGo(option, data);
      case NBD_OPT_LIST_META_CONTEXT:
      case NBD_OPT_SET_META_CONTEXT:
        await this.#metaContext(option, data);
        return null;
      default:
        await this.#replyError(option, NBD_REP_ERR_UNSUP, "option not supported");
        return null;
    }
  }

  async #infoOrGo(option: number, data: Uint8Array): Promise<boolean | null> {
    let request;
    try {
      request = decodeExportRequest(data);
    } catch (e) {
      await this.#replyError(option, NBD_REP_ERR_INVALID, (e as Error).message);
      return null;
    }
    const exp = this.#options.lookup(request.name);
    if (!exp) {
      await this.#replyError(option, NBD_REP_ERR_UNKNOWN, `export '${request.name}' not present`);
      return null;
    }
    const info = (payload: Parameters<typeof encodeInfoReply>[0]) =>
      this.#reply(option, NBD_REP_INFO, encodeInfoReply(payload));
    if (request.infoRequests.includes(NBD_INFO_NAME)) {
      await info({ type: NBD_INFO_NAME, name: exp.name });
    }
    if (request.infoRequests.includes(NBD_INFO_DESCRIPTION) && exp.description) {
      await info({ type: NBD_INFO_DESCRIPTION, description: exp.description });
    }
    // Block sizes go out unasked, as qemu does: they are constraints the client must know.
    await info({
      type: NBD_INFO_BLOCK_SIZE,
      minimum: exp.minimumBlock ?? 1,
      preferred: exp.preferredBlock ?? 4096,
      maximum: maxPayloadOf(exp),
    });
    await info({ type: NBD_INFO_EXPORT, size: exp.target.size, flags: transmissionFlags(exp) });
    await this.#reply(option, NBD_REP_ACK);
    if (option === NBD_OPT_INFO) return null;
    this.#export = exp;
    return true;
  }

  async #metaContext(option: number, data: Uint8Array): Promise<void> {
    const set = option === NBD_OPT_SET_META_CONTEXT;
    // SET replaces the selection even when it fails.
    if (set) this.#metaExport = null;
    if (!this.#structured) {
      await this.#replyError(option, NBD_REP_ERR_INVALID, "structured replies not negotiated");
      return;
    }
    let request;
    try {
      request = decodeMetaContextRequest(data);
    } catch (e) {
      await this.#replyError(option, NBD_REP_ERR_INVALID, (e as Error).message);
      return;
    }
    if (!this.#options.lookup(request.name)) {
      await this.#replyError(option, NBD_REP_ERR_UNKNOWN, `export '${request.name}' not present`);
      return;
    }
    const wanted = set ? request.queries.includes(BASE_ALLOCATION) : request.queries.length === 0 ||
      request.queries.some((q) => q === BASE_ALLOCATION || q === "base:");
    if (wanted) {
      await this.#reply(
        option,
        NBD_REP_META_CONTEXT,
        encodeMetaContextReply({ id: set ? BASE_ALLOCATION_ID : 0, name: BASE_ALLOCATION }),
      );
      if (set) this.#metaExport = request.name;
    }
    await this.#reply(option, NBD_REP_ACK);
  }

  // --- transmission ------------------------------------------------------------------

  async #transmission(): Promise<void> {
    const exp = this.#export!;
    const maxPayload = maxPayloadOf(exp);
    while (!this.#closed) {
      while (this.#inFlight >= this.#options.maxInFlight && !this.#closed) {
        await new Promise<void>((r) => this.#waiters.push(r));
      }
      const head = await this.#reader.read(REQUEST_HEADER_SIZE, true);
      if (!head || this.#closed) return;
      const request = decodeRequestHeader(head);
      // Payload memory is bounded too: wait until this request's bytes fit (or it runs alone).
      const cost = request.type === NBD_CMD_READ || request.type === NBD_CMD_WRITE
        ? Math.min(request.length, maxPayload)
        : 0;
      while (
        this.#inFlight > 0 && this.#inFlightBytes + cost > this.#options.maxInFlightBytes &&
        !this.#closed
      ) {
        await new Promise<void>((r) => this.#waiters.push(r));
      }
      let data: Uint8Array | undefined;
      if (request.type === NBD_CMD_WRITE) {
        if (request.length > maxPayload) {
          throw new NbdProtocolError(
            "NBD_WRITE_TOO_LARGE",
            `NBD write of ${request.length} bytes exceeds the ${maxPayload}-byte maximum`,
          );
        }
        data = await this.#reader.readExact(request.length);
      }
      if (request.type === NBD_CMD_DISC) {
        await this.shutdown();
        return;
      }
      this.#inFlight++;
      this.#inFlightBytes += cost;
      this.#serve(exp, request, data).finally(() => {
        this.#inFlight--;
        this.#inFlightBytes -= cost;
        this.#wake();
      });
    }
  }

  async #serve(exp: NbdExportOptions, request: NbdRequest, data?: Uint8Array): Promise<void> {
    try {
      try {
        if (this.#shuttingDown) throw new Refused(NBD_ESHUTDOWN, "server shutting down");
        this.#validate(exp, request);
        await this.#perform(exp, request, data);
      } catch (e) {
        const errno = e instanceof Refused ? e.errno : NBD_EIO;
        const message = e instanceof Refused ? e.message : "I/O error";
        await this.#sendError(request, errno, message);
      }
    } catch {
      // The reply could not be written: the connection is gone.
      this.close();
    }
  }

  #validate(exp: NbdExportOptions, r: NbdRequest): void {
    const allowed = ALLOWED_FLAGS[r.type];
    if (allowed === undefined) throw new Refused(NBD_EINVAL, `unknown command ${r.type}`);
    if (r.flags & ~allowed) {
      throw new Refused(NBD_EINVAL, `flags 0x${r.flags.toString(16)} invalid`);
    }
    if ((r.flags & NBD_CMD_FLAG_DF) && !this.#structured) {
      throw new Refused(NBD_EINVAL, "DF needs structured replies");
    }
    if (r.type === NBD_CMD_FLUSH) return;
    const writes = r.type === NBD_CMD_WRITE || r.type === NBD_CMD_WRITE_ZEROES ||
      r.type === NBD_CMD_TRIM;
    if (writes && exp.readOnly) throw new Refused(NBD_EPERM, "export is read-only");
    const size = exp.target.size;
    if (r.offset > size || r.offset + r.length > size) {
      const errno = r.type === NBD_CMD_WRITE || r.type === NBD_CMD_WRITE_ZEROES
        ? NBD_ENOSPC
        : NBD_EINVAL;
      throw new Refused(errno, "request past the end of the export");
    }
    const min = exp.minimumBlock ?? 1;
    if (
      min > 1 && (r.offset % min !== 0 || (r.length % min !== 0 && r.offset + r.length !== size))
    ) {
      throw new Refused(NBD_EINVAL, "request not aligned to the minimum block size");
    }
    if (r.type === NBD_CMD_READ && r.length > maxPayloadOf(exp)) {
      throw new Refused(NBD_EINVAL, "read larger than the maximum payload");
    }
    if (r.type === NBD_CMD_BLOCK_STATUS) {
      if (this.#metaExport !== exp.name || !this.#structured) {
        throw new Refused(NBD_EINVAL, "no metadata context selected");
      }
      if (r.length === 0) throw new Refused(NBD_EINVAL, "block status of length 0");
    }
  }

  async #perform(exp: NbdExportOptions, r: NbdRequest, data?: Uint8Array): Promise<void> {
    const target = exp.target;
    switch (r.type) {
      case NBD_CMD_READ:
        return await this.#read(exp, r);
      case NBD_CMD_WRITE:
        await target.write(r.offset, data!);
        break;
      case NBD_CMD_WRITE_ZEROES:
        if (r.length > 0) await target.writeZeroes(r.offset, r.length);
        break;
      case NBD_CMD_FLUSH:
        await target.flush();
        break;
      case NBD_CMD_TRIM: // a hint; keeping the data is always correct
      case NBD_CMD_CACHE:
        break;
      case NBD_CMD_BLOCK_STATUS:
        return await this.#blockStatus(exp, r);
    }
    if ((r.flags & NBD_CMD_FLAG_FUA) && r.type !== NBD_CMD_FLUSH) await target.flush();
    // Commands without data get simple replies even with structured replies on, as qemu does.
    await this.#writer.write(encodeSimpleReply({ error: 0, cookie: r.cookie }));
  }

  async #read(exp: NbdExportOptions, r: NbdRequest): Promise<void> {
    const buf = new Uint8Array(r.length);
    if (!this.#structured) {
      await exp.target.read(r.offset, buf);
      await this.#writer.write(encodeSimpleReply({ error: 0, cookie: r.cookie }), buf);
      return;
    }
    if (r.length === 0) {
      await this.#writer.write(
        encodeChunk(
          { flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_NONE, cookie: r.cookie },
          new Uint8Array(0),
        ),
      );
      return;
    }
    // Sparse read: holes become OFFSET_HOLE chunks and are not read (unless DF asks for one chunk).
    const runs: { offset: number; length: number; hole: boolean }[] = [];
    if (r.flags & NBD_CMD_FLAG_DF) {
      runs.push({ offset: r.offset, length: r.length, hole: false });
    } else {
      let at = r.offset;
      const end = r.offset + r.length;
      while (at < end) {
        const remaining = end - at;
        if (runs.length >= MAX_READ_CHUNKS - 1) {
          runs.push({ offset: at, length: remaining, hole: false });
          break;
        }
        let status;
        try {
          status = await exp.target.blockStatus(at, remaining);
        } catch {
          // Without status the rest is sent as data, which is always correct.
          runs.push({ offset: at, length: remaining, hole: false });
          break;
        }
        const length = clampLength(status.length, remaining);
        const hole = status.kind !== "data" && length >= MIN_HOLE;
        const last = runs[runs.length - 1];
        if (last && last.hole === hole) last.length += length;
        else runs.push({ offset: at, length, hole });
        at += length;
      }
    }
    const parts: Uint8Array[] = [];
    for (const [i, run] of runs.entries()) {
      const flags = i === runs.length - 1 ? NBD_REPLY_FLAG_DONE : 0;
      if (run.hole) {
        parts.push(
          encodeChunk(
            { flags, type: NBD_REPLY_TYPE_OFFSET_HOLE, cookie: r.cookie },
            encodeOffsetHole(run.offset, run.length),
          ),
        );
        continue;
      }
      const slice = buf.subarray(run.offset - r.offset, run.offset - r.offset + run.length);
      await exp.target.read(run.offset, slice);
      // Header and offset in one small array, the data itself without a copy.
      const head = encodeChunk(
        { flags, type: NBD_REPLY_TYPE_OFFSET_DATA, cookie: r.cookie },
        new Uint8Array(8),
      );
      view(head).setUint32(16, 8 + run.length);
      setU64(view(head), 20, run.offset);
      parts.push(head, slice);
    }
    await this.#writer.write(...parts);
  }

  async #blockStatus(exp: NbdExportOptions, r: NbdRequest): Promise<void> {
    const extents: NbdExtent[] = [];
    const end = r.offset + r.length;
    let at = r.offset;
    const limit = (r.flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : MAX_REPLY_EXTENTS;
    while (at < end && extents.length < limit) {
      const status = await exp.target.blockStatus(at, end - at);
      const length = clampLength(status.length, end - at);
      const flags = status.kind === "data" ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO;
      const last = extents[extents.length - 1];
      if (last && last.flags === flags) last.length += length;
      else extents.push({ length, flags });
      at += length;
    }
    await this.#writer.write(
      encodeChunk(
        { flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_BLOCK_STATUS, cookie: r.cookie },
        encodeBlockStatus(BASE_ALLOCATION_ID, extents),
      ),
    );
  }

  async #sendError(r: NbdRequest, errno: number, message: string): Promise<void> {
    if (this.#structured && (r.type === NBD_CMD_READ || r.type === NBD_CMD_BLOCK_STATUS)) {
      await this.#writer.write(
        encodeChunk(
          { flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_ERROR, cookie: r.cookie },
          encodeErrorChunk(errno, message),
        ),
      );
      return;
    }
    await this.#writer.write(encodeSimpleReply({ error: errno, cookie: r.cookie }));
  }
}

/** A target's run length forced into `[1, remaining]`, so a buggy target cannot stall a loop. */
function clampLength(length: number, remaining: number): number {
  if (!Number.isFinite(length) || length < 1) return remaining;
  return Math.min(Math.floor(length), remaining);
}

/** The export's maximum payload, bounded by the protocol's 32 MiB. */
export function maxPayloadOf(exp: NbdExportOptions): number {
  return Math.min(exp.maximumPayload ?? NBD_MAX_PAYLOAD, NBD_MAX_PAYLOAD);
}
