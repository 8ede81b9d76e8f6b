/**
 * The table of QMP commands: a schema per command ({@linkcode QmpCommandSchema})
 * and, once the layer that implements it is wired, a handler.
 *
 * A command whose handler is not registered yet does not exist for clients:
 * it is answered `The command X has not been found` and not listed by
 * `query-commands`, exactly as qemu answers commands it was built without.
 *
 * @module
 */

import type { QmpCommandSchema } from "./schema.ts";

/** What a handler learns about the request besides its arguments. */
export interface QmpCommandContext {
  /** The session (connection) that sent the command. */
  readonly session: QmpSessionControl;
  /** Sends an event to every negotiated session, stamped now. */
  emitEvent(event: string, data?: Record<string, unknown>): void;
}

/** The part of a session a handler may change (used by `qmp_capabilities`). */
export interface QmpSessionControl {
  /** Whether capabilities negotiation is complete. */
  readonly negotiated: boolean;
  /** Whether the `oob` capability was enabled. */
  readonly oobEnabled: boolean;
  /** The capabilities this server offers. */
  readonly offered: readonly string[];
  /** Leaves negotiation mode with the given capabilities enabled. */
  completeNegotiation(enabled: readonly string[]): void;
}

/**
 * Runs a command. `args` are the checked arguments (defaults filled in);
 * the return value (or `undefined` for `{}`) becomes `return`. Throw a
 * `QmpError` to choose the error class; any other error is a `GenericError`
 * with its message.
 */
export type QmpCommandHandler<A = Record<string, unknown>> = (
  args: A,
  context: QmpCommandContext,
) => unknown;

/** A command as the dispatcher sees it. */
export interface QmpCommand {
  /** Its declaration. */
  readonly schema: QmpCommandSchema;
  /** Its implementation. */
  readonly handler: QmpCommandHandler;
}

/**
 * Command schemas and handlers, by name.
 *
 * @example Wire a handler to a declared command
 * ```ts
 * import { QmpCommandRegistry } from "./command_registry.ts";
 * import { QMP_COMMAND_SCHEMAS } from "./schema.ts";
 * const registry = new QmpCommandRegistry(QMP_COMMAND_SCHEMAS);
 * registry.handle("query-jobs", () => []);
 * console.log(registry.find("query-jobs") !== undefined); // true
 * console.log(registry.find("block-stream")); // undefined: no handler yet
 * ```
 */
export class QmpCommandRegistry {
  readonly #schemas = new Map<string, QmpCommandSchema>();
  readonly #handlers = new Map<string, QmpCommandHandler>();

  /** Makes a registry that declares `schemas` (in registration order). */
  constructor(schemas: Iterable<QmpCommandSchema> = []) {
    for (const s of schemas) this.declare(s);
  }

  /** Declares (or redeclares) a command's schema. */
  declare(schema: QmpCommandSchema): void {
    this.#schemas.delete(schema.name);
    this.#schemas.set(schema.name, schema);
  }

  /** Attaches the handler of a declared command; throws if it is not declared. */
  handle<A = Record<string, unknown>>(name: string, handler: QmpCommandHandler<A>): void {
    if (!this.#schemas.has(name)) throw new TypeError(`QMP command ${name} is not declared`);
    this.#handlers.set(name, handler as QmpCommandHandler);
  }

  /** Declares a command and attaches its handler in one step. */
  register<A = Record<string, unknown>>(
    schema: QmpCommandSchema,
    handler: QmpCommandHandler<A>,
  ): void {
    this.declare(schema);
    this.handle(schema.name, handler);
  }

  /** Removes a command's handler (the schema stays declared). */
  unhandle(name: string): void {
    this.#handlers.delete(name);
  }

  /** The schema of a declared command. */
  schema(name: string): QmpCommandSchema | undefined {
    return this.#schemas.get(name);
  }

  /** A command that can run: declared and with a handler. */
  find(name: string): QmpCommand | undefined {
    const schema = this.#schemas.get(name);
    const handler = this.#handlers.get(name);
    return schema && handler ? { schema, handler } : undefined;
  }

  /** Names of the commands that can run, newest registration first (qemu's `query-commands` order). */
  available(): string[] {
    return [...this.#schemas.keys()].filter((n) => this.#handlers.has(n)).reverse();
  }
}
