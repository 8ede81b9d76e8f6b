/**
 * The seed era's streaming API (2011, `qmp-streaming.md` §4.2), served as a
 * documented downstream extension on the same engine as `block-stream`.
 *
 * - `block_stream {device[, offset]}` streams one piece (at most 512 KiB)
 *   from the device's saved position, or from `offset`, and answers
 *   `{device, offset, len}`: the position reached and the device size. The
 *   piece after the last completes the stream (the backing link is removed
 *   and the header rewritten) and emits `BLOCK_STREAM_COMPLETED`.
 * - `block_stream {device, all: true}` starts a background stream of the
 *   whole device: a `block-stream` job whose id is the device name (as in
 *   qemu 1.1), so `query-block-jobs` shows it too. Answers `{}`.
 * - `block_stream {device, stop: true}` cancels it and answers `{}` once it
 *   has stopped; no `BLOCK_STREAM_COMPLETED` follows a stop.
 * - `query-block-stream` lists `{device, offset, len}` per active stream.
 * - `BLOCK_STREAM_COMPLETED {device, offset, len[, error]}` ends a stream;
 *   success iff `offset == len`.
 *
 * Errors use the classes the seed's management code matched on:
 * `DeviceNotFound` (`Device 'X' not found`), `DeviceInUse` (`Device 'X' is
 * in use`: already streaming, or a job owns the node), `DeviceNotActive`
 * (`Device 'X' has not been activated`: stop without a stream),
 * `NotSupported` (`Operation is not supported`: the node cannot take the
 * data or change its backing link).
 *
 * @module
 */

import { BlockDevice } from "../block/device.ts";
import type { BlockGraph } from "../block/graph.ts";
import { nodeBlocker } from "../block/graph.ts";
import type { JobRegistry } from "../block/job_registry.ts";
import { type BlockNode, chainOf } from "../block/node.ts";
import { startStream, type StreamJob } from "../block/stream_job.ts";
import { streamOne } from "../block/stream_one.ts";
import { withQmpErrors } from "./block_error_map.ts";
import { QmpError } from "./error.ts";
import { jobSettled } from "./_job_waits.ts";
import { q } from "./qapi_type.ts";
import type { QmpCommandSchema } from "./schema.ts";
import type { QmpServer } from "./server.ts";

/** `block_stream` of the seed era. */
export const SEED_BLOCK_STREAM: QmpCommandSchema = {
  name: "block_stream",
  args: q.struct("block_stream", {
    device: q.str,
    "*all": { type: q.bool, default: false },
    "*stop": { type: q.bool, default: false },
    "*offset": q.int,
  }),
  returns: "{device, offset, len} for one piece, {} with all or stop",
};

/** `query-block-stream` of the seed era. */
export const SEED_QUERY_BLOCK_STREAM: QmpCommandSchema = {
  name: "query-block-stream",
  args: q.struct("query-block-stream", {}),
  returns: "[{device, offset, len}]",
};

/** The seed era's completion event. */
export const BLOCK_STREAM_COMPLETED = "BLOCK_STREAM_COMPLETED";

/** What the seed commands work on. */
export interface SeedCommandsContext {
  /** The nodes and devices. */
  graph: BlockGraph;
  /** The jobs (a background stream is one). */
  jobs: JobRegistry;
  /** Chunks a background stream keeps in flight. Default 1. */
  parallel?: number;
}

/** One device's stream as the seed API sees it. */
interface SeedStream {
  /** The name the client used. */
  device: string;
  /** Where the next single piece starts. */
  position: number;
  /** The background stream, while it runs. */
  job?: StreamJob | undefined;
  /** A single piece is being streamed. */
  stepping: boolean;
}

interface BlockStreamArgs {
  device: string;
  all: boolean;
  stop: boolean;
  offset?: number;
}

/**
 * Declares and wires `block_stream` and `query-block-stream` (so
 * `query-commands` lists them, which is how the seed's management code
 * detects the API).
 *
 * @example
 * ```ts
 * import { BlockGraph, JobRegistry } from "../block/mod.ts";
 * import { QmpServer } from "./server.ts";
 * import { registerSeedCommands } from "./seed_commands.ts";
 * const server = new QmpServer();
 * registerSeedCommands(server, { graph: new BlockGraph(), jobs: new JobRegistry() });
 * console.log(server.commands.available().slice(0, 2)); // ["query-block-stream", "block_stream"]
 * ```
 */
export function registerSeedCommands(server: QmpServer, context: SeedCommandsContext): void {
  const { graph, jobs } = context;
  const streams = new Map<BlockNode, SeedStream>();

  const target = (name: string): { node: BlockNode; device: BlockDevice } => {
    let found;
    try {
      found = graph.lookup(name);
    } catch {
      throw new QmpError("DeviceNotFound", `Device '${name}' not found`);
    }
    return { node: found.node, device: found.device ?? new BlockDevice(found.node) };
  };

  const completed = (s: SeedStream, len: number, offset: number, error?: string) => {
    const data: Record<string, unknown> = { device: s.device, offset, len };
    if (error !== undefined) data.error = error;
    server.emitEvent(BLOCK_STREAM_COMPLETED, data);
  };

  const stop = async (name: string, node: BlockNode) => {
    const job = streams.get(node)?.job;
    if (!job) throw new QmpError("DeviceNotActive", `Device '${name}' has not been activated`);
    job.cancel({ force: true });
    await jobSettled(jobs, job);
  };

  const checkFree = (name: string, node: BlockNode, s: SeedStream | undefined) => {
    const inUse = () => new QmpError("DeviceInUse", `Device '${name}' is in use`);
    if (s?.job || s?.stepping) throw inUse();
    for (const n of chainOf(node)) if (nodeBlocker(n) !== undefined) throw inUse();
    if (node.readOnly || (node.backing && !node.setBacking)) {
      throw new QmpError("NotSupported", "Operation is not supported");
    }
  };

  const startAll = (name: string, node: BlockNode, device: BlockDevice, s: SeedStream) => {
    const job = startStream(jobs, device, {
      jobId: name,
      deviceName: name,
      graph,
      parallel: context.parallel ?? 1,
    });
    s.job = job;
    void job.concluded.then(() => {
      s.job = undefined;
      if (job.cancelled) return;
      const len = node.size;
      if (job.error === undefined) {
        streams.delete(node);
        completed(s, len, len);
      } else {
        completed(s, len, job.currentProgress, job.error);
      }
    });
  };

  const step = async (node: BlockNode, device: BlockDevice, s: SeedStream, offset?: number) => {
    s.stepping = true;
    try {
      const r = await streamOne(device, offset ?? s.position);
      s.position = r.next;
      const len = node.size;
      if (r.completed) {
        streams.delete(node);
        completed(s, len, len);
      }
      return { device: s.device, offset: r.next, len };
    } finally {
      s.stepping = false;
    }
  };

  server.commands.register<BlockStreamArgs>(
    SEED_BLOCK_STREAM,
    withQmpErrors(async (args) => {
      if (args.all && args.stop) {
        throw new QmpError("GenericError", "'all' and 'stop' cannot be specified at the same time");
      }
      if (args.offset !== undefined && (args.all || args.stop)) {
        throw new QmpError("GenericError", "'offset' cannot be specified with 'all' or 'stop'");
      }
      const { node, device } = target(args.device);
      if (args.stop) {
        await stop(args.device, node);
        return {};
      }
      const known = streams.get(node);
      checkFree(args.device, node, known);
      const s = known ?? { device: args.device, position: 0, stepping: false };
      s.device = args.device;
      streams.set(node, s);
      if (args.all) {
        startAll(args.device, node, device, s);
        return {};
      }
      return await step(node, device, s, args.offset);
    }),
  );

  server.commands.register(SEED_QUERY_BLOCK_STREAM, () => {
    const out: Record<string, unknown>[] = [];
    for (const [node, s] of streams) {
      const len = node.size;
      const offset = s.job ? s.job.currentProgress : s.position;
      if (s.job || (offset > 0 && offset < len)) out.push({ device: s.device, offset, len });
    }
    return out;
  });
}
