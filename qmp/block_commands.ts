/**
 * The block commands of qemu-storage-daemon 7.2 over a {@linkcode BlockGraph}
 * and a {@linkcode JobRegistry}: `query-block`, `query-named-block-nodes`,
 * `block-stream`, and (through {@linkcode registerJobCommands}) the job
 * commands; job events are forwarded to every negotiated session.
 *
 * The handlers are thin: argument checking is the schema's
 * (`QMP_COMMAND_SCHEMAS`), texts are the block layer's, and only the order
 * of events relative to replies is decided here, as qemu-storage-daemon
 * writes them: `block-stream` returns after `created` and `running`, or after
 * the whole lifecycle when there is nothing to stream (or, with
 * `auto-finalize: false`, after `BLOCK_JOB_PENDING`). The graph's node events
 * (`QUORUM_REPORT_BAD`, `QUORUM_FAILURE`) are forwarded like job events.
 *
 * @module
 */

import type { BlockGraph } from "../block/graph.ts";
import { BlockError } from "../block/error.ts";
import type { JobRegistry } from "../block/job_registry.ts";
import type { OnErrorPolicy } from "../block/job.ts";
import { startStream } from "../block/stream_job.ts";
import type { Clock } from "../io/clock.ts";
import { withQmpErrors } from "./block_error_map.ts";
import { registerJobCommands } from "./job_commands.ts";
import { registerCommitCommand } from "./commit_command.ts";
import { jobSettled } from "./_job_waits.ts";
import { blockDeviceInfo, type HostFileStat, queryNamedBlockNodes } from "./named_block_nodes.ts";
import { registerSeedCommands } from "./seed_commands.ts";
import type { QmpServer } from "./server.ts";

/** What the block commands work on. */
export interface BlockCommandsContext {
  /** The nodes and devices. */
  graph: BlockGraph;
  /** The jobs. */
  jobs: JobRegistry;
  /** The daemon's clock (jobs sleep on the registry's; event timestamps come from the server's). */
  clock: Clock;
}

/** Options of {@linkcode registerBlockCommands}. */
export interface BlockCommandsOptions {
  /**
   * Chunks a stream job keeps in flight. Default 1: qemu's loop exactly, so
   * progress and rate limiting look as in qemu-storage-daemon.
   */
  streamParallel?: number;
  /** Also serve the seed era's `block_stream` and `query-block-stream`. Default true. */
  seedCommands?: boolean;
  /** Stats host files for `actual-size` / `virtual-size`. Default: `Deno.stat`. */
  stat?: (path: string) => Promise<HostFileStat | undefined>;
}

/** `block-stream`'s arguments after the schema's checks (defaults filled in). */
interface BlockStreamArgs {
  "job-id"?: string;
  device: string;
  base?: string;
  "base-node"?: string;
  "backing-file"?: string;
  bottom?: string;
  speed: number;
  "on-error": OnErrorPolicy;
  "filter-node-name"?: string;
  "auto-finalize": boolean;
  "auto-dismiss": boolean;
}

function exclusive(args: BlockStreamArgs): void {
  const both = (a: keyof BlockStreamArgs, b: keyof BlockStreamArgs) => {
    if (args[a] !== undefined && args[b] !== undefined) {
      throw new BlockError(
        "BAD_ARGUMENT",
        `'${a}' and '${b}' cannot be specified at the same time`,
      );
    }
  };
  // qemu checks these before looking the device up (qmp-streaming.md §2.2, checks 1–3).
  both("base", "base-node");
  both("base", "bottom");
  both("bottom", "base-node");
}

/**
 * Wires `query-block`, `query-named-block-nodes`, `block-stream`, the
 * `block-job-*` and `job-*` commands and, unless turned off, the seed era's
 * commands; forwards every job event and node event to the server's
 * sessions. Returns a function that stops forwarding them.
 *
 * @example
 * ```ts
 * import { BlockGraph, JobRegistry } from "../block/mod.ts";
 * import { systemClock } from "../io/clock.ts";
 * import { QmpServer } from "./server.ts";
 * import { registerBlockCommands } from "./block_commands.ts";
 * const server = new QmpServer();
 * const stop = registerBlockCommands(server, {
 *   graph: new BlockGraph(),
 *   jobs: new JobRegistry(),
 *   clock: systemClock,
 * });
 * console.log(server.commands.find("block-stream") !== undefined); // true
 * stop();
 * ```
 */
export function registerBlockCommands(
  server: QmpServer,
  context: BlockCommandsContext,
  options: BlockCommandsOptions = {},
): () => void {
  const { graph, jobs } = context;
  const parallel = options.streamParallel ?? 1;
  const stat = options.stat;
  const queryOptions = { jobs, ...(stat ? { stat } : {}) };

  server.commands.handle("query-block", async () => {
    const out: Record<string, unknown>[] = [];
    for (const device of graph.devices()) {
      out.push({
        device: device.name,
        type: "unknown",
        removable: false,
        locked: false,
        inserted: await blockDeviceInfo(graph, device.top, queryOptions),
      });
    }
    return out;
  });

  server.commands.handle<{ flat: boolean }>(
    "query-named-block-nodes",
    (args) => queryNamedBlockNodes(graph, { ...queryOptions, flat: args.flat }),
  );

  server.commands.handle<BlockStreamArgs>(
    "block-stream",
    withQmpErrors(async (args) => {
      exclusive(args);
      const { node, device } = graph.lookup(args.device);
      const job = startStream(jobs, device ?? node, {
        ...(args["job-id"] !== undefined ? { jobId: args["job-id"] } : {}),
        deviceName: args.device,
        ...(args.base !== undefined ? { base: args.base } : {}),
        ...(args["base-node"] !== undefined ? { baseNode: args["base-node"] } : {}),
        ...(args.bottom !== undefined ? { bottom: args.bottom } : {}),
        ...(args["backing-file"] !== undefined ? { backingFile: args["backing-file"] } : {}),
        ...(args["filter-node-name"] !== undefined
          ? { filterNodeName: args["filter-node-name"] }
          : {}),
        speed: args.speed,
        onError: args["on-error"],
        autoFinalize: args["auto-finalize"],
        autoDismiss: args["auto-dismiss"],
        graph,
        parallel,
      });
      // qemu runs a job with nothing to do to its end before the reply is written.
      if (job.nothingToStream) await jobSettled(jobs, job);
      return {};
    }),
  );

  registerJobCommands(server, jobs);
  registerCommitCommand(server, { graph, jobs });
  if (options.seedCommands ?? true) registerSeedCommands(server, { graph, jobs, parallel });

  const offJobs = jobs.on((event) => server.emitEvent(event.event, { ...event.data }));
  // Node events (a quorum's votes) reach the sessions the same way.
  const offNodes = graph.on((event) => server.emitEvent(event.event, { ...event.data }));
  return () => {
    offJobs();
    offNodes();
  };
}
