/**
 * The QMP monitor: a server indistinguishable from qemu-storage-daemon 7.2's
 * for everything streaming touches, and a client for either.
 *
 * - {@linkcode QmpServer} serves sessions over any {@linkcode ByteTransport}
 *   ({@linkcode listen} puts it on a Unix socket or TCP port); commands are
 *   a schema ({@linkcode QMP_COMMAND_SCHEMAS}) plus a handler wired with
 *   `server.commands.handle(name, fn)`; events go out with
 *   `server.emitEvent(name, data)`, throttled as qemu throttles them
 *   ({@linkcode QMP_EVENT_THROTTLE}).
 * - {@linkcode registerBlockCommands} wires the block and job commands (and
 *   the seed era's `block_stream` / `query-block-stream`) over a block graph
 *   and a job registry, forwarding job events.
 * - {@linkcode QmpClient} connects, negotiates, executes and waits for events.
 * - {@linkcode JsonMessageParser} is qemu's streaming JSON parser, errors and
 *   limits included; {@linkcode toQemuJson} is qemu's JSON writer.
 *
 * @example Wire a command, then call it through the client
 * ```ts
 * import { memoryTransportPair, QmpClient, QmpServer } from "./mod.ts";
 * const server = new QmpServer();
 * server.commands.handle("query-jobs", () => []);
 * const [mine, theirs] = memoryTransportPair();
 * void server.serve(theirs);
 * const qmp = await QmpClient.connect({ transport: mine });
 * console.log(await qmp.execute("query-jobs")); // []
 * await qmp.close();
 * ```
 *
 * @module
 */

export {
  type BlockCommandsContext,
  type BlockCommandsOptions,
  registerBlockCommands,
} from "./block_commands.ts";
export { blockErrorToQmp, withQmpErrors } from "./block_error_map.ts";
export {
  QmpClient,
  type QmpClientOptions,
  type QmpEvent,
  type QmpGreeting,
  type WaitEventOptions,
} from "./client.ts";
export {
  type QmpCommand,
  type QmpCommandContext,
  type QmpCommandHandler,
  QmpCommandRegistry,
  type QmpSessionControl,
} from "./command_registry.ts";
export { genericError, QmpConnectionError, QmpError, type QmpErrorClass } from "./error.ts";
export {
  type JsonMessage,
  type JsonMessageHandler,
  JsonMessageParser,
  type JsonParserLimits,
  QEMU_JSON_LIMITS,
} from "./json_parser.ts";
export { registerJobCommands } from "./job_commands.ts";
export { BLOCK_COMMIT, registerCommitCommand } from "./commit_command.ts";
export { type BlockdevAdmin, registerBlockdevCommands } from "./blockdev_commands.ts";
export { isJsonObject, type JsonObject, type JsonValue, QNum } from "./json_value.ts";
export { formatDouble, quoteString, toQemuJson } from "./json_writer.ts";
export {
  blockDeviceInfo,
  denoStat,
  type HostFileStat,
  type NamedBlockNodesOptions,
  type NodeOrigin,
  nodeOrigin,
  queryNamedBlockNodes,
  recordNodeOrigin,
} from "./named_block_nodes.ts";
export {
  q,
  type QapiBuilders,
  type QapiIntName,
  type QapiMember,
  type QapiMemberSpec,
  type QapiStruct,
  type QapiType,
  visitArguments,
} from "./qapi_type.ts";
export { qdictKeys } from "./qdict_order.ts";
export {
  BLOCK_STREAM,
  BLOCKDEV_ON_ERROR,
  commandSchema,
  IO_STATUS,
  JOB_STATUS,
  JOB_TYPE,
  QMP_CAPABILITY,
  QMP_COMMAND_SCHEMAS,
  type QmpCommandSchema,
} from "./schema.ts";
export {
  BLOCK_STREAM_COMPLETED,
  registerSeedCommands,
  SEED_BLOCK_STREAM,
  SEED_QUERY_BLOCK_STREAM,
  type SeedCommandsContext,
} from "./seed_commands.ts";
export { EventThrottle, type EventThrottleRule, QMP_EVENT_THROTTLE } from "./event_throttle.ts";
export {
  QMP_REQUEST_QUEUE_MAX,
  QmpServer,
  type QmpServerOptions,
  type QmpVersion,
} from "./server.ts";
export {
  connect,
  connTransport,
  listen,
  type QmpAddress,
  type QmpListener,
  type TransportServer,
} from "./socket_transport.ts";
export {
  type ByteTransport,
  type MemoryTransportOptions,
  memoryTransportPair,
} from "./transport.ts";
export {
  QEDSTREAM_BLOCK_STREAM,
  QEDSTREAM_PREFIX,
  type QedstreamExtensionsContext,
  type QedstreamExtensionsOptions,
  registerQedstreamExtensions,
} from "./qedstream_extensions.ts";
