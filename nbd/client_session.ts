/**
 * One connection of an {@linkcode NbdClient} in the transmission phase:
 * sends requests with fresh cookies, reads replies in a loop and matches them
 * to requests by cookie (replies and chunks of different requests may arrive
 * in any order), reassembles structured reads, and enforces the per-request
 * timeout. When anything goes wrong with the connection every request in
 * flight is rejected at once and the owner is told, so it can reconnect.
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";
import { concat } from "./_bytes.ts";
import type { NbdExportInfo } from "./client_handshake.ts";
import { NbdConnectionError, NbdProtocolError, NbdRequestError, NbdTimeoutError } from "./error.ts";
import {
  commandName,
  errnoName,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_READ,
  NBD_EINVAL,
  NBD_ESHUTDOWN,
  NBD_MAX_CHUNK_PAYLOAD,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
} from "./protocol.ts";
import {
  decodeChunkHeader,
  decodeChunkPayload,
  decodeSimpleReply,
  isErrorChunkType,
  type NbdExtent,
  replyHeaderSize,
} from "./reply.ts";
import { encodeRequest } from "./request.ts";
import type { NbdStream, StreamReader, StreamWriter } from "./stream.ts";
import { view } from "./_bytes.ts";

/** One request to send. */
export interface SessionRequest {
  /** `NBD_CMD_*`. */
  type: number;
  /** `NBD_CMD_FLAG_*`. */
  flags: number;
  /** Byte offset. */
  offset: number;
  /** Byte length. */
  length: number;
  /** Payload of a write. */
  data?: Uint8Array;
  /** Destination of a read (exactly `length` bytes). */
  buf?: Uint8Array;
}

interface Pending {
  request: SessionRequest;
  covered: number;
  error: NbdRequestError | null;
  extents: NbdExtent[] | null;
  timedOut: boolean;
  cancelTimer: AbortController;
  resolve(extents: NbdExtent[] | null): void;
  reject(error: unknown): void;
}

/** The wiring a session needs from its client. */
export interface SessionOptions {
  /** Clock for timeouts. */
  clock: Clock;
  /** Per-request timeout in ms; 0 disables it. */
  requestTimeout: number;
  /** Source of cookies unique across this client's sessions. */
  nextCookie(): bigint;
  /** Called once when the connection fails. */
  onLost(error: Error): void;
}

/** A connected NBD session in the transmission phase. */
export class ClientSession {
  /** What the handshake learned. */
  readonly info: NbdExportInfo;
  readonly #stream: NbdStream;
  readonly #reader: StreamReader;
  readonly #writer: StreamWriter;
  readonly #options: SessionOptions;
  readonly #pending = new Map<bigint, Pending>();
  #failure: Error | null = null;

  /** Starts the reply loop on a negotiated connection. */
  constructor(
    io: { stream: NbdStream; reader: StreamReader; writer: StreamWriter },
    info: NbdExportInfo,
    options: SessionOptions,
  ) {
    this.#stream = io.stream;
    this.#reader = io.reader;
    this.#writer = io.writer;
    this.info = info;
    this.#options = options;
    this.#replyLoop().catch((e) => this.fail(e));
  }

  /** Whether the connection is still usable. */
  get alive(): boolean {
    return this.#failure === null;
  }

  /** Requests in flight. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Sends one request and resolves when its reply is complete (with extents for block status). */
  send(request: SessionRequest): Promise<NbdExtent[] | null> {
    if (this.#failure) return Promise.reject(this.#failure);
    const cookie = this.#options.nextCookie();
    const { promise, resolve, reject } = Promise.withResolvers<NbdExtent[] | null>();
    const pending: Pending = {
      request,
      covered: 0,
      error: null,
      extents: null,
      timedOut: false,
      cancelTimer: new AbortController(),
      resolve,
      reject,
    };
    this.#pending.set(cookie, pending);
    const header = encodeRequest({
      type: request.type,
      flags: request.flags,
      cookie,
      offset: request.offset,
      length: request.length,
    });
    const parts = request.data ? [header, request.data] : [header];
    this.#writer.write(...parts).catch((e) => this.fail(e));
    if (this.#options.requestTimeout > 0) {
      this.#options.clock.sleep(this.#options.requestTimeout, pending.cancelTimer.signal).then(
        () => {
          if (!this.#pending.has(cookie)) return;
          // NBD cannot cancel a request: a server that misses the deadline is treated as hung,
          // so the connection is dropped (and re-made by the client) rather than left waiting.
          pending.timedOut = true;
          this.fail(
            new NbdTimeoutError(
              "NBD_TIMEOUT",
              `NBD ${
                commandName(request.type)
              } of ${request.length} bytes at offset ${request.offset} got no reply within ${this.#options.requestTimeout} ms`,
            ),
          );
        },
        () => {},
      );
    }
    return promise;
  }

  /** Drops the connection and rejects every request in flight. */
  fail(error: unknown): void {
    if (this.#failure) return;
    const cause = error instanceof Error ? error : new Error(String(error));
    this.#failure = cause instanceof NbdConnectionError ? cause : new NbdConnectionError(
      "NBD_DISCONNECTED",
      `NBD connection lost: ${cause.message}`,
      { cause },
    );
    this.#stream.close();
    for (const [, p] of this.#pending) {
      p.cancelTimer.abort();
      p.reject(p.timedOut ? cause : this.#failure);
    }
    this.#pending.clear();
    this.#options.onLost(this.#failure);
  }

  /** Soft disconnect: `NBD_CMD_DISC`, then close. */
  async disconnect(): Promise<void> {
    if (this.#failure) return;
    const header = encodeRequest({
      type: NBD_CMD_DISC,
      flags: 0,
      cookie: this.#options.nextCookie(),
      offset: 0,
      length: 0,
    });
    try {
      await this.#writer.write(header);
    } catch {
      // Closing anyway.
    }
    this.#failure = new NbdConnectionError("NBD_CLOSED", "NBD connection closed");
    this.#stream.close();
    for (const [, p] of this.#pending) p.reject(this.#failure);
    this.#pending.clear();
  }

  #lookup(cookie: bigint): Pending {
    const p = this.#pending.get(cookie);
    if (!p) {
      throw new NbdProtocolError(
        "NBD_UNKNOWN_COOKIE",
        `NBD server replied to cookie ${cookie}, which is not in flight`,
      );
    }
    return p;
  }

  /** Settles a finished request; a protocol violation leaves it in flight for `fail` to reject. */
  #complete(cookie: bigint, p: Pending): void {
    const r = p.request;
    if (p.error) {
      this.#pending.delete(cookie);
      p.cancelTimer.abort();
      return p.reject(p.error);
    }
    if (r.type === NBD_CMD_READ && this.info.structuredReplies && p.covered !== r.length) {
      throw new NbdProtocolError(
        "NBD_SHORT_READ",
        `NBD server covered ${p.covered} of ${r.length} bytes of a read`,
      );
    }
    if (r.type === NBD_CMD_BLOCK_STATUS && !p.extents) {
      throw new NbdProtocolError(
        "NBD_NO_EXTENTS",
        "NBD server answered block status without base:allocation extents",
      );
    }
    this.#pending.delete(cookie);
    p.cancelTimer.abort();
    p.resolve(p.extents);
  }

  async #replyLoop(): Promise<void> {
    for (;;) {
      const magic = await this.#reader.read(4, true);
      if (!magic) {
        throw new NbdConnectionError("NBD_DISCONNECTED", "NBD server closed the connection");
      }
      if (this.#failure) return;
      const rest = await this.#reader.readExact(replyHeaderSize(magic) - 4);
      const head = concat([magic, rest]);
      if (view(magic).getUint32(0) === NBD_SIMPLE_REPLY_MAGIC) {
        const reply = decodeSimpleReply(head);
        const p = this.#lookup(reply.cookie);
        if (reply.error !== 0) {
          p.error = requestError(reply.error, "", p.request);
        } else if (p.request.type === NBD_CMD_READ) {
          await this.#reader.readInto(p.request.buf!);
          p.covered = p.request.length;
        }
        this.#checkShutdown(p);
        if (p.request.type === NBD_CMD_BLOCK_STATUS && !p.error) {
          throw new NbdProtocolError(
            "NBD_UNEXPECTED_REPLY",
            "NBD server answered block status with a simple reply",
          );
        }
        this.#complete(reply.cookie, p);
        continue;
      }
      const chunk = decodeChunkHeader(head);
      if (!this.info.structuredReplies) {
        throw new NbdProtocolError(
          "NBD_UNEXPECTED_REPLY",
          "NBD server sent a structured reply that was not negotiated",
        );
      }
      const p = this.#lookup(chunk.cookie);
      const r = p.request;
      const known = chunk.type <= NBD_REPLY_TYPE_BLOCK_STATUS || isErrorChunkType(chunk.type);
      const limit = chunk.type === NBD_REPLY_TYPE_OFFSET_DATA
        ? 8 + r.length
        : NBD_MAX_CHUNK_PAYLOAD;
      if (!known || chunk.length > limit) {
        throw new NbdProtocolError(
          "NBD_BAD_CHUNK",
          `NBD server sent chunk type ${chunk.type} of ${chunk.length} bytes to ${
            commandName(r.type)
          }`,
        );
      }
      const payload = decodeChunkPayload(chunk.type, await this.#reader.readExact(chunk.length));
      switch (payload.type) {
        case NBD_REPLY_TYPE_NONE:
          if (!(chunk.flags & NBD_REPLY_FLAG_DONE)) {
            throw new NbdProtocolError("NBD_BAD_CHUNK", "NBD_REPLY_TYPE_NONE without DONE");
          }
          break;
        case NBD_REPLY_TYPE_OFFSET_DATA:
        case NBD_REPLY_TYPE_OFFSET_HOLE: {
          const at = (payload as { offset: number }).offset;
          const length = "data" in payload ? payload.data.length : (payload as { length: number })
            .length;
          if (r.type !== NBD_CMD_READ || at < r.offset || at + length > r.offset + r.length) {
            throw new NbdProtocolError(
              "NBD_BAD_CHUNK",
              `NBD read chunk [${at}, +${length}) lies outside the request [${r.offset}, +${r.length})`,
            );
          }
          if ("data" in payload) r.buf!.set(payload.data, at - r.offset);
          else r.buf!.fill(0, at - r.offset, at - r.offset + length);
          p.covered += length;
          break;
        }
        case NBD_REPLY_TYPE_BLOCK_STATUS: {
          if (r.type !== NBD_CMD_BLOCK_STATUS) {
            throw new NbdProtocolError(
              "NBD_BAD_CHUNK",
              "NBD block status chunk for another command",
            );
          }
          const status = payload as { contextId: number; extents: NbdExtent[] };
          if (status.contextId === this.info.baseAllocationId) p.extents = status.extents;
          break;
        }
        case NBD_REPLY_TYPE_ERROR:
        case NBD_REPLY_TYPE_ERROR_OFFSET: {
          const e = payload as { error: number; message: string };
          p.error ??= requestError(e.error, e.message, r);
          break;
        }
        default:
          // An unknown error chunk fails the request; the connection goes on.
          p.error ??= requestError(NBD_EINVAL, `unknown error chunk type ${chunk.type}`, r);
      }
      this.#checkShutdown(p);
      if (chunk.flags & NBD_REPLY_FLAG_DONE) this.#complete(chunk.cookie, p);
    }
  }

  /** `NBD_ESHUTDOWN` means the server is going away: treat it as a lost connection (retryable). */
  #checkShutdown(p: Pending): void {
    if (p.error?.errno === NBD_ESHUTDOWN) {
      throw new NbdConnectionError("NBD_DISCONNECTED", "NBD server is shutting down", {
        cause: p.error,
      });
    }
  }
}

function requestError(errno: number, message: string, r: SessionRequest): NbdRequestError {
  const code = errnoName(errno);
  return new NbdRequestError(
    errno,
    code,
    `NBD ${commandName(r.type)} of ${r.length} bytes at offset ${r.offset} failed: ${code}${
      message ? ` (${message})` : ""
    }`,
  );
}
