/**
 * {@linkcode NbdClient}: a remote NBD export as a block device — `size`,
 * `read`, `write`, `writeZeroes`, `flush`, `blockStatus`, `close` — that
 * `block/` wraps as a node (qemu's `nbd` block driver).
 *
 * - Handshake: fixed newstyle, structured replies, `base:allocation`, then
 *   `NBD_OPT_GO` (falling back to `NBD_OPT_EXPORT_NAME`).
 * - Many requests in flight on one connection (at most `maxInFlight`),
 *   matched by cookie; requests larger than the server's maximum payload are
 *   split, and requests not aligned to its minimum block are widened (reads)
 *   or done as read-modify-write (writes).
 * - A timeout per request, measured on the injected {@linkcode Clock}.
 * - Reconnection with exponential backoff when the server goes away. Like
 *   qemu's `reconnect-delay`, requests in flight when the connection drops,
 *   and requests made while it is down, wait up to `reconnectDelay` ms for a
 *   new connection and are then sent again; after that (and always when
 *   `reconnectDelay` is 0, the default) they fail with
 *   {@linkcode NbdConnectionError} `NBD_DISCONNECTED`. The client keeps
 *   reconnecting in the background until it is closed.
 *
 * @example
 * ```ts ignore
 * import { NbdClient } from "./client.ts";
 * const client = await NbdClient.connect({
 *   address: { type: "unix", path: "/run/template.sock" },
 *   exportName: "template",
 * });
 * const buf = new Uint8Array(65536);
 * await client.read(0, buf);
 * console.log(await client.blockStatus(0, client.size)); // { kind: "data", length: ... }
 * await client.close();
 * ```
 *
 * @module
 */

import { type Clock, systemClock } from "../io/clock.ts";
import { describeAddress, type NbdAddress } from "./address.ts";
import { type NbdExportInfo, negotiate, negotiateList } from "./client_handshake.ts";
import { ClientSession, type SessionRequest } from "./client_session.ts";
import {
  NbdConnectionError,
  NbdOptionError,
  NbdProtocolError,
  NbdRequestError,
  NbdTimeoutError,
} from "./error.ts";
import type { ServerReply } from "./option_reply.ts";
import type { NbdExtent } from "./reply.ts";
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EPERM,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
} from "./protocol.ts";
import { type NbdStream, StreamReader, StreamWriter } from "./stream.ts";
import { connectStream } from "./transport.ts";

/** What a run of the export is, as `block/` names it. */
export type NbdBlockStatusKind = "data" | "zero" | "unallocated";

/** The run of one kind that starts at the asked offset. */
export interface NbdBlockStatus {
  /** `zero`: reads as zeros (`NBD_STATE_ZERO`); `unallocated`: a hole of undefined contents; else `data`. */
  kind: NbdBlockStatusKind;
  /** Length in bytes, at most the length asked. */
  length: number;
}

/** Something that happened to the client's connection. */
export type NbdClientEvent =
  | { type: "disconnected"; error: Error }
  | { type: "reconnected"; attempts: number };

/** How to reach the server and how to behave. All times are in ms of `clock`. */
export interface NbdClientOptions {
  /** Where the server listens. Either this or `connect` is required. */
  address?: NbdAddress;
  /** Makes a connected stream instead of dialling `address` (tests, in-memory pipes). */
  connect?: () => Promise<NbdStream>;
  /** Export name; `""` (the default) is the server's default export. */
  exportName?: string;
  /** Clock for timeouts and backoff (default the system clock). */
  clock?: Clock;
  /** Per-request timeout; 0 disables it (default 30000). A timeout drops the connection. */
  requestTimeout?: number;
  /** Timeout of each connect-and-handshake attempt (default 10000). */
  connectTimeout?: number;
  /**
   * How long `connect` keeps retrying a server that cannot be reached, like
   * qemu's `open-timeout` (default 0: one attempt). A refused export is not retried.
   */
  openTimeout?: number;
  /** Reconnect in the background after losing the server (default `true`). */
  reconnect?: boolean;
  /**
   * How long requests wait for a reconnection and are then re-sent, like
   * qemu's `reconnect-delay` (default 0: they fail at once).
   */
  reconnectDelay?: number;
  /** First wait between reconnection attempts (default 100), doubling up to `backoffMax`. */
  backoffInitial?: number;
  /** Longest wait between reconnection attempts (default 5000). */
  backoffMax?: number;
  /** Times one request is re-sent after reconnections before it fails (default 3). */
  maxRetries?: number;
  /** Requests in flight at once (default 16, like qemu). */
  maxInFlight?: number;
  /** Negotiate structured replies (default `true`). */
  structuredReplies?: boolean;
  /** Select `base:allocation` for block status (default `true`). */
  blockStatus?: boolean;
  /** Refuse writes locally even if the export is writable (default `false`). */
  readOnly?: boolean;
  /** Told about disconnections and reconnections. */
  onEvent?: (event: NbdClientEvent) => void;
}

type Resolved = Required<Omit<NbdClientOptions, "address" | "connect" | "onEvent">> & {
  onEvent: ((event: NbdClientEvent) => void) | undefined;
};

function positive(value: number | undefined, fallback: number, what: string): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v < 0) throw new RangeError(`${what} must be ≥ 0, got ${v}`);
  return v;
}

/** Largest write-zeroes / trim / block-status length per request (u32, aligned later). */
const MAX_NO_PAYLOAD_LENGTH = 2 ** 31;

/** An NBD export over one connection, as a block device. */
export class NbdClient {
  readonly #connect: () => Promise<NbdStream>;
  readonly #options: Resolved;
  readonly #description: string;
  #session: ClientSession | null = null;
  #info: NbdExportInfo;
  #closed = false;
  #cookie = 0n;
  #slotsFree: number;
  #slotWaiters: (() => void)[] = [];
  /** While disconnected: resolves with the new session, or with `null` when the wait is over. */
  #reconnected: PromiseWithResolvers<ClientSession | null> | null = null;
  #failFast = false;
  #stopTimers = new AbortController();
  #inFlight = new Set<Promise<unknown>>();
  #windowTimer: AbortController | null = null;

  private constructor(
    connect: () => Promise<NbdStream>,
    description: string,
    options: Resolved,
    first: ClientSession,
  ) {
    this.#connect = connect;
    this.#description = description;
    this.#options = options;
    this.#slotsFree = options.maxInFlight;
    this.#session = first;
    this.#info = first.info;
  }

  /**
   * Connects and negotiates; fails with {@linkcode NbdConnectionError}
   * (`NBD_CONNECT_FAILED`), {@linkcode NbdOptionError} (e.g. no such export)
   * or {@linkcode NbdProtocolError}. Reconnection applies only afterwards.
   */
  static async connect(options: NbdClientOptions): Promise<NbdClient> {
    const connect = clientConnector(options);
    const resolved: Resolved = {
      exportName: options.exportName ?? "",
      clock: options.clock ?? systemClock,
      requestTimeout: positive(options.requestTimeout, 30000, "requestTimeout"),
      connectTimeout: positive(options.connectTimeout, 10000, "connectTimeout"),
      openTimeout: positive(options.openTimeout, 0, "openTimeout"),
      reconnect: options.reconnect ?? true,
      reconnectDelay: positive(options.reconnectDelay, 0, "reconnectDelay"),
      backoffInitial: positive(options.backoffInitial, 100, "backoffInitial"),
      backoffMax: positive(options.backoffMax, 5000, "backoffMax"),
      maxRetries: positive(options.maxRetries, 3, "maxRetries"),
      maxInFlight: Math.max(1, Math.floor(positive(options.maxInFlight, 16, "maxInFlight"))),
      structuredReplies: options.structuredReplies ?? true,
      blockStatus: options.blockStatus ?? true,
      readOnly: options.readOnly ?? false,
      onEvent: options.onEvent,
    };
    const description = options.address ? describeAddress(options.address) : "(custom stream)";
    // The session's callbacks need the client, which needs the first session: bind late.
    let client: NbdClient | null = null;
    const hooks = {
      nextCookie: () => client!.#nextCookie(),
      onLost: (error: Error) => {
        if (client) client.#onLost(error);
      },
    };
    // Like qemu's open-timeout: keep trying the first connection, but not past a refusal.
    const deadline = resolved.clock.now() + resolved.openTimeout;
    let delay = resolved.backoffInitial;
    let first: ClientSession;
    for (;;) {
      try {
        first = await openSession(connect, resolved, hooks, description);
        break;
      } catch (e) {
        const transient = e instanceof NbdConnectionError || e instanceof NbdTimeoutError;
        if (!transient || resolved.clock.now() + delay > deadline) throw e;
        await resolved.clock.sleep(delay);
        delay = Math.min(delay * 2, resolved.backoffMax);
      }
    }
    client = new NbdClient(connect, description, resolved, first);
    if (!first.alive) {
      // Lost before the client existed to hear it: start the reconnection now.
      client.#onLost(new NbdConnectionError("NBD_DISCONNECTED", "NBD connection lost"));
    }
    return client;
  }

  /**
   * Lists the server's exports with `NBD_OPT_LIST`.
   *
   * @example
   * ```ts ignore
   * const exports = await NbdClient.list({ address: { type: "unix", path: "/run/nbd.sock" } });
   * console.log(exports.map((e) => e.name));
   * ```
   */
  static async list(
    options: Pick<NbdClientOptions, "address" | "connect">,
  ): Promise<ServerReply[]> {
    const stream = await clientConnector(options)();
    try {
      return await negotiateList(new StreamReader(stream), new StreamWriter(stream));
    } finally {
      stream.close();
    }
  }

  /** Export size in bytes. */
  get size(): number {
    return this.#info.size;
  }

  /** What the last handshake learned (flags, block sizes, contexts). */
  get info(): Readonly<NbdExportInfo> {
    return this.#info;
  }

  /** Whether writes are refused (export read-only, or `readOnly` asked). */
  get readOnly(): boolean {
    return this.#options.readOnly || (this.#info.flags & NBD_FLAG_READ_ONLY) !== 0;
  }

  /** Whether a connection is up right now. */
  get connected(): boolean {
    return this.#session?.alive ?? false;
  }

  /** Reads `buf.length` bytes at `offset`. */
  async read(offset: number, buf: Uint8Array): Promise<void> {
    this.#checkRange(offset, buf.length);
    const { start, end } = this.#widen(offset, buf.length);
    if (start === offset && end === offset + buf.length) return this.#readAligned(offset, buf);
    const tmp = new Uint8Array(end - start);
    await this.#readAligned(start, tmp);
    buf.set(tmp.subarray(offset - start, offset - start + buf.length));
  }

  /** Writes `data` at `offset`; unaligned edges are read, merged and written back. */
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#checkWritable(offset, data.length);
    const { start, end } = this.#widen(offset, data.length);
    if (start === offset && end === offset + data.length) return this.#writeAligned(offset, data);
    // Read-modify-write of the edge blocks; not atomic against concurrent writers of the
    // same block (qemu serializes these with tracked requests; our callers do the same).
    const tmp = new Uint8Array(end - start);
    const min = this.#info.minimumBlock;
    await this.#readAligned(start, tmp.subarray(0, min));
    if (end - min > start) await this.#readAligned(end - min, tmp.subarray(tmp.length - min));
    tmp.set(data, offset - start);
    await this.#writeAligned(start, tmp);
  }

  /** Writes zeros over `[offset, offset + length)`, with `NBD_CMD_WRITE_ZEROES` where possible. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.#checkWritable(offset, length);
    if (length === 0) return;
    const min = this.#info.minimumBlock;
    const alignedStart = Math.ceil(offset / min) * min;
    const alignedEnd = Math.floor((offset + length) / min) * min;
    if (!(this.#info.flags & NBD_FLAG_SEND_WRITE_ZEROES) || alignedEnd <= alignedStart) {
      const step = this.#maxPayload();
      const zeros = new Uint8Array(Math.min(step, length));
      const parts: Promise<unknown>[] = [];
      for (let at = 0; at < length; at += step) {
        parts.push(this.write(offset + at, zeros.subarray(0, Math.min(step, length - at))));
      }
      await Promise.all(parts);
      return;
    }
    const parts: Promise<unknown>[] = [];
    if (alignedStart > offset) {
      parts.push(this.write(offset, new Uint8Array(alignedStart - offset)));
    }
    if (offset + length > alignedEnd) {
      parts.push(this.write(alignedEnd, new Uint8Array(offset + length - alignedEnd)));
    }
    const step = Math.floor(MAX_NO_PAYLOAD_LENGTH / min) * min;
    for (let at = alignedStart; at < alignedEnd; at += step) {
      const n = Math.min(step, alignedEnd - at);
      parts.push(this.#request({ type: NBD_CMD_WRITE_ZEROES, flags: 0, offset: at, length: n }));
    }
    await Promise.all(parts);
  }

  /** Discards `[offset, offset + length)` when the server supports trim (a hint; no-op otherwise). */
  async trim(offset: number, length: number): Promise<void> {
    this.#checkWritable(offset, length);
    if (!(this.#info.flags & NBD_FLAG_SEND_TRIM)) return;
    const min = this.#info.minimumBlock;
    const start = Math.ceil(offset / min) * min;
    const end = Math.floor((offset + length) / min) * min;
    const step = Math.floor(MAX_NO_PAYLOAD_LENGTH / min) * min;
    const parts: Promise<unknown>[] = [];
    for (let at = start; at < end; at += step) {
      parts.push(
        this.#request({
          type: NBD_CMD_TRIM,
          flags: 0,
          offset: at,
          length: Math.min(step, end - at),
        }),
      );
    }
    await Promise.all(parts);
  }

  /** Makes completed writes durable (`NBD_CMD_FLUSH`; a no-op if the server has no flush). */
  async flush(): Promise<void> {
    if (!(this.#info.flags & NBD_FLAG_SEND_FLUSH)) return;
    await this.#request({ type: NBD_CMD_FLUSH, flags: 0, offset: 0, length: 0 });
  }

  /**
   * The run of one kind starting at `offset`, at most `length` bytes, from
   * `base:allocation`. Consecutive extents of the same kind are merged. When
   * the server offers no block status everything is `data`.
   */
  async blockStatus(offset: number, length: number): Promise<NbdBlockStatus> {
    this.#checkRange(offset, length);
    length = Math.min(length, this.size - offset);
    if (length === 0) return { kind: "data", length: 0 };
    if (this.#info.baseAllocationId === null) return { kind: "data", length };
    const min = this.#info.minimumBlock;
    const start = Math.floor(offset / min) * min;
    const end = Math.min(
      this.size,
      Math.ceil(Math.min(offset + length, start + MAX_NO_PAYLOAD_LENGTH) / min) * min,
    );
    const extents = await this.#request(
      { type: NBD_CMD_BLOCK_STATUS, flags: 0, offset: start, length: end - start },
    );
    if (!extents || extents.length === 0) {
      return { kind: "data", length };
    }
    const kind = kindOf(extents[0]!.flags);
    let runEnd = start;
    for (const e of extents) {
      if (kindOf(e.flags) !== kind) break;
      runEnd += e.length;
    }
    // A first extent that ends inside the block holding `offset` breaks the alignment rule;
    // answer a conservative one-block "data" run then.
    if (runEnd <= offset) return { kind: "data", length: Math.min(length, start + min - offset) };
    return { kind, length: Math.min(length, runEnd - offset) };
  }

  /**
   * Waits for requests in flight, sends `NBD_CMD_DISC` and closes. Requests
   * made afterwards fail with `NBD_CLOSED`.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopTimers.abort();
    this.#reconnected?.resolve(null);
    // Let requests in flight finish (each bounded by the request timeout).
    await Promise.allSettled([...this.#inFlight]);
    await this.#session?.disconnect();
    this.#session = null;
  }

  #nextCookie(): bigint {
    this.#cookie = (this.#cookie + 1n) & 0xffffffffffffffffn;
    return this.#cookie;
  }

  #maxPayload(): number {
    const min = this.#info.minimumBlock;
    return Math.max(min, Math.floor(this.#info.maximumPayload / min) * min);
  }

  #widen(offset: number, length: number): { start: number; end: number } {
    const min = this.#info.minimumBlock;
    return {
      start: Math.floor(offset / min) * min,
      end: Math.min(Math.ceil((offset + length) / min) * min, Math.max(this.size, offset + length)),
    };
  }

  #checkRange(offset: number, length: number): void {
    if (
      !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
      offset + length > this.size
    ) {
      throw new NbdRequestError(
        NBD_EINVAL,
        "NBD_EINVAL",
        `NBD request [${offset}, +${length}) lies outside the ${this.size}-byte export`,
      );
    }
  }

  #checkWritable(offset: number, length: number): void {
    if (this.readOnly) {
      throw new NbdRequestError(
        NBD_EPERM,
        "NBD_EPERM",
        `NBD export of ${this.#description} is read-only`,
      );
    }
    this.#checkRange(offset, length);
  }

  async #readAligned(offset: number, buf: Uint8Array): Promise<void> {
    const step = this.#maxPayload();
    const parts: Promise<unknown>[] = [];
    for (let at = 0; at < buf.length; at += step) {
      const n = Math.min(step, buf.length - at);
      parts.push(this.#request({
        type: NBD_CMD_READ,
        flags: 0,
        offset: offset + at,
        length: n,
        buf: buf.subarray(at, at + n),
      }));
    }
    await Promise.all(parts);
  }

  async #writeAligned(offset: number, data: Uint8Array): Promise<void> {
    const step = this.#maxPayload();
    const parts: Promise<unknown>[] = [];
    for (let at = 0; at < data.length; at += step) {
      const n = Math.min(step, data.length - at);
      parts.push(this.#request({
        type: NBD_CMD_WRITE,
        flags: 0,
        offset: offset + at,
        length: n,
        data: data.subarray(at, at + n),
      }));
    }
    await Promise.all(parts);
  }

  async #acquireSlot(): Promise<void> {
    while (this.#slotsFree === 0) await new Promise<void>((r) => this.#slotWaiters.push(r));
    this.#slotsFree--;
  }

  #releaseSlot(): void {
    this.#slotsFree++;
    this.#wakeSlots();
  }

  #wakeSlots(): void {
    const w = this.#slotWaiters.shift();
    if (w) w();
  }

  /** Sends one request (≤ the maximum payload), tracked so that `close` can wait for it. */
  #request(request: SessionRequest): Promise<NbdExtent[] | null> {
    const p = this.#sendWithRetry(request);
    this.#inFlight.add(p);
    const forget = () => this.#inFlight.delete(p);
    p.then(forget, forget);
    return p;
  }

  /** Sends one request, re-sending it after reconnections as configured. */
  async #sendWithRetry(request: SessionRequest): Promise<NbdExtent[] | null> {
    await this.#acquireSlot();
    try {
      for (let attempt = 0;; attempt++) {
        const session = await this.#liveSession();
        try {
          return await session.send(request);
        } catch (e) {
          const retry = e instanceof NbdConnectionError && e.code === "NBD_DISCONNECTED" &&
            this.#options.reconnect && this.#options.reconnectDelay > 0 &&
            attempt < this.#options.maxRetries && !this.#closed;
          if (!retry) throw e;
        }
      }
    } finally {
      this.#releaseSlot();
    }
  }

  async #liveSession(): Promise<ClientSession> {
    for (;;) {
      if (this.#closed) {
        throw new NbdConnectionError("NBD_CLOSED", `NBD client of ${this.#description} is closed`);
      }
      if (this.#session?.alive) return this.#session;
      if (this.#failFast || !this.#reconnected) {
        throw new NbdConnectionError(
          "NBD_DISCONNECTED",
          `NBD server ${this.#description} is not connected`,
        );
      }
      await this.#reconnected.promise;
    }
  }

  #onLost(error: Error): void {
    if (this.#closed || this.#reconnected) return;
    this.#session = null;
    this.#reconnected = Promise.withResolvers();
    this.#failFast = !this.#options.reconnect || this.#options.reconnectDelay === 0;
    this.#options.onEvent?.({ type: "disconnected", error });
    const window = this.#reconnected;
    if (!this.#failFast) {
      this.#windowTimer = new AbortController();
      const stop = AbortSignal.any([this.#stopTimers.signal, this.#windowTimer.signal]);
      this.#options.clock.sleep(this.#options.reconnectDelay, stop).then(
        () => {
          if (this.#reconnected !== window) return;
          this.#failFast = true;
          window.resolve(null); // waiters re-check and fail
        },
        () => {},
      );
    }
    if (this.#options.reconnect) this.#reconnectLoop(window).catch(() => {});
  }

  async #reconnectLoop(window: PromiseWithResolvers<ClientSession | null>): Promise<void> {
    let delay = 0;
    for (let attempts = 1; !this.#closed; attempts++) {
      if (delay > 0) await this.#options.clock.sleep(delay, this.#stopTimers.signal);
      delay = Math.min(Math.max(delay * 2, this.#options.backoffInitial), this.#options.backoffMax);
      let session: ClientSession;
      try {
        session = await openSession(this.#connect, this.#options, {
          nextCookie: () => this.#nextCookie(),
          onLost: (error) => this.#onLost(error),
        }, this.#description);
      } catch {
        continue;
      }
      if (this.#closed) {
        await session.disconnect();
        return;
      }
      if (session.info.size !== this.#info.size) {
        // qemu refuses to reconnect to an export whose size changed; so do we (and keep trying).
        await session.disconnect();
        continue;
      }
      this.#info = session.info;
      this.#session = session;
      this.#reconnected = null;
      this.#failFast = false;
      this.#windowTimer?.abort();
      this.#windowTimer = null;
      window.resolve(session);
      this.#options.onEvent?.({ type: "reconnected", attempts });
      return;
    }
  }
}

function kindOf(flags: number): NbdBlockStatusKind {
  if (flags & NBD_STATE_ZERO) return "zero";
  if (flags & NBD_STATE_HOLE) return "unallocated";
  return "data";
}

function clientConnector(
  options: Pick<NbdClientOptions, "address" | "connect">,
): () => Promise<NbdStream> {
  if (options.connect) return options.connect;
  const address = options.address;
  if (!address) throw new TypeError("NbdClient needs an address or a connect function");
  return () => connectStream(address);
}

async function openSession(
  connect: () => Promise<NbdStream>,
  options: Resolved,
  hooks: { nextCookie(): bigint; onLost(error: Error): void },
  description: string,
): Promise<ClientSession> {
  const stream = await connect();
  const reader = new StreamReader(stream);
  const writer = new StreamWriter(stream);
  const timer = new AbortController();
  let timedOut = false;
  if (options.connectTimeout > 0) {
    options.clock.sleep(options.connectTimeout, timer.signal).then(() => {
      timedOut = true;
      stream.close();
    }, () => {});
  }
  try {
    const info = await negotiate(reader, writer, {
      exportName: options.exportName,
      structuredReplies: options.structuredReplies,
      blockStatus: options.blockStatus,
    });
    return new ClientSession({ stream, reader, writer }, info, {
      clock: options.clock,
      requestTimeout: options.requestTimeout,
      nextCookie: hooks.nextCookie,
      onLost: hooks.onLost,
    });
  } catch (e) {
    stream.close();
    if (timedOut) {
      throw new NbdTimeoutError(
        "NBD_TIMEOUT",
        `NBD handshake with ${description} took longer than ${options.connectTimeout} ms`,
        { cause: e },
      );
    }
    if (e instanceof NbdOptionError || e instanceof NbdProtocolError) throw e;
    throw new NbdConnectionError(
      "NBD_CONNECT_FAILED",
      `NBD handshake with ${description} failed: ${(e as Error).message}`,
      { cause: e },
    );
  } finally {
    timer.abort();
  }
}
