/**
 * `QmpServer`: qemu-storage-daemon's QMP monitor over any byte stream.
 *
 * Per connection (a session): the greeting, capabilities negotiation, qemu's
 * streaming JSON parser, qemu's request checks in qemu's order, replies and
 * events written as qemu writes them (`\r\n` after each, members in qemu's
 * order). Events go to every negotiated session, byte-identical, and are
 * written the moment they are emitted, so an event a command causes is
 * written before that command's reply, as in qemu.
 *
 * Flow control follows qemu's monitor: without OOB a session reads no further
 * input until the request it has read is answered; with OOB up to 8 in-band
 * requests wait, and `exec-oob` requests are answered at once.
 *
 * Limits, so a hostile client costs bounded memory and never disturbs other
 * sessions: the parser's limits (qemu's by default); no new request is taken
 * while more than 1 MiB of a session's output is unsent, and a session whose
 * unsent output (events included) passes `maxOutputBytes` is disconnected;
 * a bound on sessions (one more is told so and closed).
 *
 * @module
 */

import { type Clock, systemClock } from "../io/clock.ts";
import {
  type QmpCommandContext,
  type QmpCommandHandler,
  QmpCommandRegistry,
  type QmpSessionControl,
} from "./command_registry.ts";
import { QmpError } from "./error.ts";
import { EventThrottle } from "./event_throttle.ts";
import { type JsonMessage, JsonMessageParser, type JsonParserLimits } from "./json_parser.ts";
import {
  hasMember,
  isJsonObject,
  type JsonObject,
  type JsonValue,
  newJsonObject,
} from "./json_value.ts";
import { toQemuJson } from "./json_writer.ts";
import { visitArguments } from "./qapi_type.ts";
import { qdictKeys } from "./qdict_order.ts";
import { QMP_COMMAND_SCHEMAS, type QmpCommandSchema } from "./schema.ts";
import type { ByteTransport } from "./transport.ts";

/** The version a server reports (greeting and `query-version`). */
export interface QmpVersion {
  /** qemu's major version. Default 7. */
  major: number;
  /** Minor version. Default 2. */
  minor: number;
  /** Micro version. Default 0. */
  micro: number;
  /** The package string. Default `"qedstream"`. */
  package: string;
}

/** Options of {@linkcode QmpServer}. */
export interface QmpServerOptions {
  /** Clock for event timestamps. Default {@linkcode systemClock}. */
  clock?: Clock;
  /** Reported version. Default 7.2.0, package `"qedstream"`. */
  version?: Partial<QmpVersion>;
  /** Offer the `oob` capability (qemu-storage-daemon always does). Default true. */
  offerOob?: boolean;
  /** Sessions served at once; one more gets an error line and is closed. Default 16. */
  maxSessions?: number;
  /** Unsent output a session may accumulate before it is disconnected. Default 16 MiB. */
  maxOutputBytes?: number;
  /** Parser limits. Default qemu's (64 MiB, 2 Mi tokens, depth 1024). */
  parserLimits?: JsonParserLimits;
  /** Answer `query-status` like a running qemu (qemu-storage-daemon has no such command). Default false. */
  queryStatus?: boolean;
  /** Called after `quit` has been answered, before every session is closed. Default: nothing. */
  onQuit?: () => void;
  /** Turns a handler's error into a QMP error; `undefined` falls back to GenericError + message. */
  mapError?: (error: unknown) => QmpError | undefined;
}

/** In-band requests qemu queues per session with OOB enabled (`QMP_REQ_QUEUE_LEN_MAX`). */
export const QMP_REQUEST_QUEUE_MAX = 8;

const encoder = new TextEncoder();
const NEGOTIATION_DESC = "Expecting capabilities negotiation with 'qmp_capabilities'";

/** Encodes a message as one line of qemu output. */
function line(message: unknown): Uint8Array {
  return encoder.encode(toQemuJson(message) + "\r\n");
}

function errorReply(errorClass: string, desc: string): Record<string, unknown> {
  return { error: { class: errorClass, desc } };
}

/**
 * A QMP server: serve any number of byte streams, emit events to them.
 *
 * @example Register a handler, talk to the server over an in-memory pipe
 * ```ts
 * import { QmpServer } from "./server.ts";
 * import { memoryTransportPair } from "./transport.ts";
 * const server = new QmpServer();
 * server.commands.handle("query-jobs", () => []);
 * const [client, end] = memoryTransportPair();
 * void server.serve(end);
 * const dec = new TextDecoder();
 * console.log(dec.decode((await client.read())!).startsWith('{"QMP"')); // true
 * client.close();
 * ```
 */
export class QmpServer {
  /** Declared commands and their handlers; wire more with `commands.handle(name, fn)`. */
  readonly commands: QmpCommandRegistry;
  readonly #clock: Clock;
  readonly #version: QmpVersion;
  readonly #offered: string[];
  readonly #maxSessions: number;
  readonly #maxOutput: number;
  readonly #limits: JsonParserLimits;
  readonly #onQuit: (() => void) | undefined;
  readonly #mapError: ((error: unknown) => QmpError | undefined) | undefined;
  readonly #sessions = new Set<Session>();
  readonly #throttle: EventThrottle;

  /** Makes a server with the built-in commands wired and the streaming commands declared. */
  constructor(options: QmpServerOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#version = { major: 7, minor: 2, micro: 0, package: "qedstream", ...options.version };
    this.#offered = options.offerOob === false ? [] : ["oob"];
    this.#maxSessions = options.maxSessions ?? 16;
    this.#maxOutput = options.maxOutputBytes ?? 16 << 20;
    this.#limits = options.parserLimits ?? {};
    this.#onQuit = options.onQuit;
    this.#mapError = options.mapError;
    this.commands = new QmpCommandRegistry(QMP_COMMAND_SCHEMAS);
    this.#throttle = new EventThrottle(this.#clock, (bytes) => {
      for (const s of this.#sessions) if (s.negotiated) s.send(bytes);
    });
    this.#wireBuiltins(options.queryStatus ?? false);
  }

  /** The version this server reports. */
  get version(): QmpVersion {
    return { ...this.#version };
  }

  /** Sessions currently open. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Shorthand for `commands.handle(name, handler)`. */
  handle<A = Record<string, unknown>>(name: string, handler: QmpCommandHandler<A>): void {
    this.commands.handle(name, handler);
  }

  /** Shorthand for `commands.register(schema, handler)`. */
  register<A = Record<string, unknown>>(
    schema: QmpCommandSchema,
    handler: QmpCommandHandler<A>,
  ): void {
    this.commands.register(schema, handler);
  }

  /**
   * Sends an event to every session that has completed negotiation, stamped
   * with the clock's wall time; `data` is left out when undefined. Events
   * qemu throttles (`QMP_EVENT_THROTTLE`) are throttled as qemu does: one
   * held back keeps its stamp and goes to the sessions open when it is sent.
   */
  emitEvent(event: string, data?: Record<string, unknown>): void {
    const us = Math.round(this.#clock.wallTime() * 1000);
    const seconds = Math.floor(us / 1e6);
    const microseconds = us - seconds * 1e6;
    this.#throttle.offer(event, data, line({ timestamp: { seconds, microseconds }, event, data }));
  }

  /**
   * Serves one connection until the peer closes it, the server drops it, or
   * {@linkcode close} is called. Never rejects.
   */
  async serve(transport: ByteTransport): Promise<void> {
    if (this.#sessions.size >= this.#maxSessions) {
      try {
        const desc = `Too many QMP sessions (at most ${this.#maxSessions}), try again later`;
        await transport.write(line(errorReply("GenericError", desc)));
      } catch { /* the peer is gone already */ }
      transport.close();
      return;
    }
    const session = new Session(this, transport, this.#maxOutput, this.#limits);
    this.#sessions.add(session);
    try {
      await session.run();
    } finally {
      this.#sessions.delete(session);
      session.close();
    }
  }

  /** Closes every session and drops the events throttling holds back. */
  close(): void {
    this.#throttle.close();
    for (const s of this.#sessions) s.close();
  }

  /** @internal The greeting line. */
  greeting(): Uint8Array {
    const { major, minor, micro } = this.#version;
    return line({
      QMP: {
        version: { qemu: { major, minor, micro }, package: this.#version.package },
        capabilities: this.#offered,
      },
    });
  }

  /** @internal The capabilities offered. */
  get offered(): readonly string[] {
    return this.#offered;
  }

  /**
   * @internal Handles one parsed request like qemu's `qmp_dispatch`. The
   * reply is synchronous unless the handler returns a promise, so requests
   * refused before any handler runs (all of `exec-oob`) are answered at once.
   */
  dispatch(
    request: JsonValue,
    session: Session,
    allowOob: boolean,
  ): Record<string, unknown> | Promise<Record<string, unknown>> {
    if (!isJsonObject(request)) {
      return errorReply("GenericError", "QMP input must be a JSON object");
    }
    const withId = (reply: Record<string, unknown>) => {
      if (hasMember(request, "id")) reply.id = request.id;
      return reply;
    };
    const fail = (desc: string, errorClass = "GenericError") =>
      withId(errorReply(errorClass, desc));
    // qemu checks the members in its hash-table order; the first offender wins.
    let execKey: string | undefined;
    for (const key of qdictKeys(request)) {
      const value = request[key];
      if (key === "execute" || (key === "exec-oob" && allowOob)) {
        if (typeof value !== "string") return fail(`QMP input member '${key}' must be a string`);
        if (execKey) return fail(`QMP input member '${key}' clashes with '${execKey}'`);
        execKey = key;
      } else if (key === "arguments") {
        if (!isJsonObject(value)) return fail("QMP input member 'arguments' must be an object");
      } else if (key !== "id") {
        return fail(`QMP input member '${key}' is unexpected`);
      }
    }
    if (execKey === undefined) return fail("QMP input lacks member 'execute'");
    const name = request[execKey] as string;
    const command = session.negotiated || name === "qmp_capabilities"
      ? this.commands.find(name)
      : undefined;
    if (!command) return fail(`The command ${name} has not been found`, "CommandNotFound");
    if (execKey === "exec-oob" && !command.schema.allowOob) {
      return fail(`The command ${name} does not support OOB`);
    }
    const args = hasMember(request, "arguments")
      ? request.arguments as JsonObject
      : newJsonObject();
    const failWith = (e: unknown) => {
      const error = e instanceof QmpError ? e : this.#mapError?.(e);
      if (error) return fail(error.desc, error.class);
      return fail(e instanceof Error ? e.message : String(e));
    };
    const succeed = (result: unknown) => withId({ return: result === undefined ? {} : result });
    try {
      const visited = visitArguments(command.schema.args, args);
      const context: QmpCommandContext = {
        session,
        emitEvent: (event, data) => this.emitEvent(event, data),
      };
      const result = command.handler(visited, context);
      if (result instanceof Promise) return result.then(succeed, failWith);
      return succeed(result);
    } catch (e) {
      return failWith(e);
    }
  }

  /** @internal Called by a session once `quit` was answered: like qemu exiting, every session ends. */
  quitRequested(): void {
    this.#onQuit?.();
    this.close();
  }

  #wireBuiltins(queryStatus: boolean): void {
    this.commands.handle<{ enable?: string[] }>("qmp_capabilities", (args, { session }) => {
      if (session.negotiated) {
        throw new QmpError(
          "CommandNotFound",
          "Capabilities negotiation is already complete, command ignored",
        );
      }
      const unavailable = (args.enable ?? []).filter((c) => !session.offered.includes(c));
      if (unavailable.length) {
        throw new QmpError("GenericError", `Capability ${unavailable.join(", ")} not available`);
      }
      session.completeNegotiation(args.enable ?? []);
    });
    this.commands.handle("query-version", () => {
      const { major, minor, micro } = this.#version;
      return { qemu: { major, minor, micro }, package: this.#version.package };
    });
    this.commands.handle(
      "query-commands",
      () => this.commands.available().map((name) => ({ name })),
    );
    this.commands.handle("quit", (_args, { session }) => {
      (session as Session).quitAfterReply = true;
    });
    if (queryStatus) {
      this.commands.handle(
        "query-status",
        () => ({ status: "running", singlestep: false, running: true }),
      );
    }
  }
}

/** One connection: its negotiation state, input parser, request queue and output. */
class Session implements QmpSessionControl {
  negotiated = false;
  oobEnabled = false;
  quitAfterReply = false;
  readonly #server: QmpServer;
  readonly #transport: ByteTransport;
  readonly #maxOutput: number;
  readonly #parser: JsonMessageParser;
  readonly #queue: JsonMessage[] = [];
  #processing = false;
  #closed = false;
  #unsent = 0;
  #writes: Promise<void> = Promise.resolve();
  #roomWaiter: (() => void) | undefined;

  constructor(
    server: QmpServer,
    transport: ByteTransport,
    maxOutput: number,
    limits: JsonParserLimits,
  ) {
    this.#server = server;
    this.#transport = transport;
    this.#maxOutput = maxOutput;
    this.#parser = new JsonMessageParser((m) => this.#onMessage(m), limits);
  }

  get offered(): readonly string[] {
    return this.#server.offered;
  }

  completeNegotiation(enabled: readonly string[]): void {
    this.negotiated = true;
    this.oobEnabled = enabled.includes("oob");
  }

  async run(): Promise<void> {
    this.send(this.#server.greeting());
    while (!this.#closed) {
      let chunk: Uint8Array | null;
      try {
        chunk = await this.#transport.read();
      } catch {
        break;
      }
      if (chunk === null) break;
      let pos = 0;
      try {
        while (!this.#closed && pos < chunk.length) {
          await this.#room();
          pos = this.#parser.feed(chunk, pos);
        }
      } catch {
        break; // A parser bug must cost this session only.
      }
      await this.#room();
    }
    this.close();
  }

  /** Queues output; a session whose peer does not read is dropped. */
  send(bytes: Uint8Array): void {
    if (this.#closed) return;
    this.#unsent += bytes.length;
    if (this.#unsent > this.#maxOutput) {
      this.close();
      return;
    }
    this.#writes = this.#writes.then(async () => {
      if (this.#closed) return;
      try {
        await this.#transport.write(bytes);
      } catch {
        this.close();
      }
      this.#unsent -= bytes.length;
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    this.#transport.close();
    this.#roomWaiter?.();
  }

  #limit(): number {
    return this.oobEnabled ? QMP_REQUEST_QUEUE_MAX : 1;
  }

  /** Waits until the request queue has room (qemu suspends its monitor meanwhile). */
  #room(): Promise<void> {
    if (this.#closed || this.#queue.length < this.#limit()) return Promise.resolve();
    return new Promise((resolve) => (this.#roomWaiter = resolve));
  }

  #onMessage(message: JsonMessage): void {
    const v = message.value;
    if (isJsonObject(v) && hasMember(v, "exec-oob") && !hasMember(v, "execute")) {
      // Out-of-band requests are dispatched at once, overtaking queued ones.
      void this.#answer(message);
      return;
    }
    this.#queue.push(message);
    if (this.#queue.length >= this.#limit()) this.#parser.pause();
    if (!this.#processing) void this.#process();
  }

  async #process(): Promise<void> {
    this.#processing = true;
    while (this.#queue.length && !this.#closed) {
      const message = this.#queue[0]!;
      await this.#answer(message);
      // Like qemu's monitor, take no new request while much output is unsent.
      if (this.#unsent > Math.min(this.#maxOutput / 2, 1 << 20)) await this.#writes;
      this.#queue.shift();
      if (this.#queue.length < this.#limit() && this.#roomWaiter) {
        const wake = this.#roomWaiter;
        this.#roomWaiter = undefined;
        wake();
      }
      if (this.quitAfterReply) {
        this.quitAfterReply = false;
        await this.#writes;
        this.#server.quitRequested();
      }
    }
    this.#processing = false;
  }

  /** Answers one message; synchronously when no handler is waited for. Never throws. */
  #answer(message: JsonMessage): void | Promise<void> {
    if (message.error !== undefined) {
      this.send(line(errorReply("GenericError", message.error)));
      return;
    }
    try {
      const reply = this.#server.dispatch(message.value, this, this.oobEnabled);
      if (reply instanceof Promise) {
        return reply.then(
          (r) => this.#sendReply(r, message.value),
          (e) => this.#internalError(e, message.value),
        );
      }
      this.#sendReply(reply, message.value);
    } catch (e) {
      this.#internalError(e, message.value);
    }
  }

  #sendReply(reply: Record<string, unknown>, request: JsonValue | undefined): void {
    const error = reply.error as { class: string; desc: string } | undefined;
    // In negotiation mode every CommandNotFound gets a more useful text.
    if (!this.negotiated && error?.class === "CommandNotFound") error.desc = NEGOTIATION_DESC;
    let bytes: Uint8Array;
    try {
      bytes = line(reply);
    } catch (e) {
      this.#internalError(e, request);
      return;
    }
    this.send(bytes);
  }

  /** A handler returned something that cannot be sent: answer with an error, keep the session. */
  #internalError(e: unknown, request: JsonValue | undefined): void {
    const reply = errorReply(
      "GenericError",
      `Internal error: ${e instanceof Error ? e.message : String(e)}`,
    );
    if (isJsonObject(request) && hasMember(request, "id")) reply.id = request.id;
    this.send(line(reply));
  }
}
