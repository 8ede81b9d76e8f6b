/**
 * `QmpClient`: talks QMP to qemu-storage-daemon or to qedstream's
 * {@linkcode QmpServer}, over a Unix socket, TCP or any transport.
 *
 * It reads the greeting, negotiates (optionally enabling `oob`), then
 * matches replies to requests by `id`. Events are buffered (bounded) in
 * arrival order and consumed by {@linkcode QmpClient.waitEvent} and the
 * {@linkcode QmpClient.events} iterator; an event that arrives before the
 * reply of the command that caused it (as qemu often sends them) is
 * therefore not lost.
 *
 * @module
 */

import { type Clock, systemClock } from "../io/clock.ts";
import { QmpConnectionError, QmpError } from "./error.ts";
import { connect, type QmpAddress } from "./socket_transport.ts";
import type { ByteTransport } from "./transport.ts";

/** An event as received. */
export interface QmpEvent {
  /** The event name, e.g. `JOB_STATUS_CHANGE`. */
  event: string;
  /** Its data (an empty object when the server sent none). */
  data: Record<string, unknown>;
  /** The server's timestamp. */
  timestamp: { seconds: number; microseconds: number };
}

/** The greeting's contents. */
export interface QmpGreeting {
  /** `{qemu: {major, minor, micro}, package}`. */
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  /** Capabilities offered, e.g. `["oob"]`. */
  capabilities: string[];
}

/** Options of {@linkcode QmpClient.connect}. */
export interface QmpClientOptions {
  /** Clock for timeouts. Default {@linkcode systemClock}. */
  clock?: Clock;
  /** Enable the `oob` capability if offered. Default false. */
  oob?: boolean;
  /** Time allowed for the greeting and negotiation, in ms. Default 10000. */
  timeout?: number;
  /** Events kept while nobody consumes them; older ones are dropped. Default 10000. */
  maxBufferedEvents?: number;
  /** Longest reply line accepted, in bytes. Default 256 MiB. */
  maxLineBytes?: number;
}

/** Options of {@linkcode QmpClient.waitEvent}. */
export interface WaitEventOptions {
  /** Give up after this many ms (QmpConnectionError). Default: wait for ever. */
  timeout?: number;
  /** Only an event for which this returns true matches. */
  filter?: (event: QmpEvent) => boolean;
  /** Abort the wait. */
  signal?: AbortSignal;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

interface EventWaiter {
  match: (e: QmpEvent) => boolean;
  resolve: (e: QmpEvent) => void;
  fail: (e: Error) => void;
}

/**
 * A QMP client.
 *
 * @example Against a running qemu-storage-daemon or `qedstream serve`
 * ```ts ignore
 * import { QmpClient } from "./client.ts";
 * const qmp = await QmpClient.connect({ path: "/tmp/qmp.sock" });
 * await qmp.execute("block-stream", { "job-id": "job0", device: "ov" });
 * const done = await qmp.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 60000 });
 * console.log(done.data.offset === done.data.len);
 * await qmp.close();
 * ```
 */
export class QmpClient {
  /** The server's greeting. */
  readonly greeting: QmpGreeting;
  readonly #transport: ByteTransport;
  readonly #clock: Clock;
  readonly #maxEvents: number;
  readonly #maxLine: number;
  readonly #pending = new Map<number, Pending>();
  readonly #events: QmpEvent[] = [];
  readonly #eventWaiters: EventWaiter[] = [];
  #nextId = 1;
  #closed = false;
  #closeError: Error | undefined;
  #reading: Promise<void>;
  #greetingWaiter: ((g: unknown) => void) | undefined;
  #greetingFailed: ((e: Error) => void) | undefined;
  readonly #greeting: Promise<unknown>;
  #droppedEvents = 0;
  #oobEnabled = false;

  private constructor(transport: ByteTransport, clock: Clock, options: QmpClientOptions) {
    this.#transport = transport;
    this.#clock = clock;
    this.#maxEvents = options.maxBufferedEvents ?? 10000;
    this.#maxLine = options.maxLineBytes ?? 256 << 20;
    this.greeting = {
      version: { qemu: { major: 0, minor: 0, micro: 0 }, package: "" },
      capabilities: [],
    };
    this.#greeting = new Promise((resolve, reject) => {
      this.#greetingWaiter = resolve;
      this.#greetingFailed = reject;
    });
    this.#greeting.catch(() => {});
    this.#reading = this.#readLoop();
  }

  /**
   * Connects (to a socket address or over a ready transport), reads the
   * greeting and completes negotiation.
   */
  static async connect(
    target: QmpAddress | { transport: ByteTransport },
    options: QmpClientOptions = {},
  ): Promise<QmpClient> {
    const transport = "transport" in target ? target.transport : await connect(target);
    const clock = options.clock ?? systemClock;
    const client = new QmpClient(transport, clock, options);
    const timeout = options.timeout ?? 10000;
    const ac = new AbortController();
    const timer = clock.sleep(timeout, ac.signal).then(
      () => {
        throw new QmpConnectionError("QMP_TIMEOUT", `no QMP greeting within ${timeout} ms`);
      },
      () => {},
    );
    try {
      const greeting = await Promise.race([client.#waitGreeting(), timer]) as QmpGreeting;
      Object.assign(client.greeting, greeting);
      const oob = (options.oob ?? false) && greeting.capabilities.includes("oob");
      await Promise.race([
        client.execute("qmp_capabilities", oob ? { enable: ["oob"] } : undefined),
        timer,
      ]);
      client.#oobEnabled = oob;
    } catch (e) {
      await client.close();
      throw e;
    } finally {
      ac.abort();
    }
    return client;
  }

  /** Whether the `oob` capability was enabled. */
  get oobEnabled(): boolean {
    return this.#oobEnabled;
  }

  /** Whether the connection is closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Events dropped because the buffer was full. */
  get droppedEvents(): number {
    return this.#droppedEvents;
  }

  /**
   * Runs a command; resolves with its `return` value or rejects with a
   * {@linkcode QmpError} carrying the server's `class` and `desc`.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.#closed) {
      return Promise.reject(
        this.#closeError ?? new QmpConnectionError("QMP_CLOSED", "QMP connection closed"),
      );
    }
    const id = this.#nextId++;
    const request: Record<string, unknown> = { execute: command };
    if (args !== undefined) request.arguments = args;
    request.id = id;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#transport.write(new TextEncoder().encode(JSON.stringify(request) + "\n")).catch((e) => {
        this.#pending.delete(id);
        reject(new QmpConnectionError("QMP_CLOSED", "QMP connection closed", { cause: e }));
      });
    });
  }

  /** Sends raw bytes as they are (for tests of malformed input). */
  async sendRaw(bytes: Uint8Array | string): Promise<void> {
    await this.#transport.write(
      typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes,
    );
  }

  /**
   * Waits for the first event called `name` (and passing `filter`), taking
   * it from the buffer if it already arrived. Buffered events that do not
   * match stay buffered.
   */
  waitEvent(name: string, options: WaitEventOptions = {}): Promise<QmpEvent> {
    const filter = options.filter;
    return this.#wait((e) => e.event === name && (filter?.(e) ?? true), options, name);
  }

  #wait(
    match: (e: QmpEvent) => boolean,
    options: WaitEventOptions,
    what: string,
  ): Promise<QmpEvent> {
    const i = this.#events.findIndex(match);
    if (i >= 0) return Promise.resolve(this.#events.splice(i, 1)[0]!);
    if (this.#closed) return Promise.reject(this.#closedError());
    return new Promise<QmpEvent>((resolve, reject) => {
      const ac = new AbortController();
      const fail = (error: Error) => {
        const k = this.#eventWaiters.indexOf(waiter);
        if (k >= 0) this.#eventWaiters.splice(k, 1);
        ac.abort();
        reject(error);
      };
      const waiter: EventWaiter = {
        match,
        resolve: (e) => {
          ac.abort();
          resolve(e);
        },
        fail,
      };
      this.#eventWaiters.push(waiter);
      if (options.timeout !== undefined) {
        this.#clock.sleep(options.timeout, ac.signal).then(
          () =>
            fail(
              new QmpConnectionError(
                "QMP_TIMEOUT",
                `no ${what} event within ${options.timeout} ms`,
              ),
            ),
          () => {},
        );
      }
      if (options.signal?.aborted) fail(new QmpConnectionError("QMP_ABORTED", "wait aborted"));
      options.signal?.addEventListener(
        "abort",
        () => fail(new QmpConnectionError("QMP_ABORTED", "wait aborted")),
        { once: true, signal: ac.signal },
      );
    });
  }

  /** Takes every buffered event. */
  takeEvents(): QmpEvent[] {
    return this.#events.splice(0);
  }

  /** An async iterator over events (buffered ones first); ends when the connection closes. */
  async *events(): AsyncGenerator<QmpEvent, void, undefined> {
    for (;;) {
      try {
        yield await this.#wait(() => true, {}, "any");
      } catch (e) {
        if (e instanceof QmpConnectionError) return;
        throw e;
      }
    }
  }

  /** Closes the connection; outstanding commands reject. */
  async close(): Promise<void> {
    this.#shutdown(new QmpConnectionError("QMP_CLOSED", "QMP connection closed"));
    this.#transport.close();
    await this.#reading;
  }

  #closedError(): Error {
    return this.#closeError ?? new QmpConnectionError("QMP_CLOSED", "QMP connection closed");
  }

  #waitGreeting(): Promise<unknown> {
    return this.#greeting;
  }

  #shutdown(error: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeError = error;
    this.#greetingFailed?.(error);
    for (const p of this.#pending.values()) p.reject(error);
    this.#pending.clear();
    for (const w of this.#eventWaiters.splice(0)) w.fail(error);
  }

  async #readLoop(): Promise<void> {
    const decoder = new TextDecoder();
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    try {
      for (;;) {
        const chunk = await this.#transport.read();
        if (chunk === null) break;
        let start = 0;
        for (let i = 0; i < chunk.length; i++) {
          if (chunk[i] !== 0x0a) continue;
          pending.push(chunk.subarray(start, i));
          const bytes = concat(pending);
          pending = [];
          pendingBytes = 0;
          start = i + 1;
          this.#onLine(decoder.decode(bytes).replace(/\r$/, ""));
        }
        if (start < chunk.length) {
          pending.push(chunk.slice(start));
          pendingBytes += chunk.length - start;
          if (pendingBytes > this.#maxLine) {
            throw new QmpConnectionError("QMP_PROTOCOL", "QMP reply line too long");
          }
        }
      }
      this.#shutdown(new QmpConnectionError("QMP_CLOSED", "QMP connection closed by the server"));
    } catch (e) {
      this.#shutdown(
        e instanceof QmpConnectionError
          ? e
          : new QmpConnectionError("QMP_PROTOCOL", String(e), { cause: e }),
      );
      this.#transport.close();
    }
  }

  #onLine(text: string): void {
    if (text.trim() === "") return;
    const msg = JSON.parse(text) as Record<string, unknown>;
    if (this.#greetingWaiter && "QMP" in msg) {
      const waiter = this.#greetingWaiter;
      this.#greetingWaiter = undefined;
      this.#greetingFailed = undefined;
      waiter(msg.QMP);
      return;
    }
    if (typeof msg.event === "string") {
      const event: QmpEvent = {
        event: msg.event,
        data: (msg.data ?? {}) as Record<string, unknown>,
        timestamp: msg.timestamp as QmpEvent["timestamp"],
      };
      const k = this.#eventWaiters.findIndex((w) => w.match(event));
      if (k >= 0) {
        this.#eventWaiters.splice(k, 1)[0]!.resolve(event);
        return;
      }
      this.#events.push(event);
      if (this.#events.length > this.#maxEvents) {
        this.#events.shift();
        this.#droppedEvents++;
      }
      return;
    }
    // A reply without an id can only answer the oldest request (qemu answers in order).
    const id = typeof msg.id === "number" ? msg.id : this.#pending.keys().next().value;
    const p = id === undefined ? undefined : this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id!);
    if ("error" in msg) {
      const err = msg.error as { class: string; desc: string };
      p.reject(new QmpError(err.class, err.desc));
    } else {
      p.resolve(msg.return);
    }
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
