/**
 * `block-commit` as qemu-storage-daemon 7.2 declares and answers it: the
 * schema (every 7.2 argument, in qemu's order), the device lookup with
 * `DeviceNotFound` (libvirt probes for it) and `Need a root block node`,
 * then the block layer's checks and the job ({@linkcode startCommit}).
 * Like `block-stream`, it returns after the job's `created` and `running`.
 *
 * @module
 */

import { startCommit } from "../block/commit_job.ts";
import type { BlockGraph } from "../block/graph.ts";
import type { OnErrorPolicy } from "../block/job.ts";
import type { JobRegistry } from "../block/job_registry.ts";
import { withQmpErrors } from "./block_error_map.ts";
import { QmpError } from "./error.ts";
import { isRootNode } from "./_node_parents.ts";
import { q } from "./qapi_type.ts";
import { BLOCKDEV_ON_ERROR, type QmpCommandSchema } from "./schema.ts";
import type { QmpServer } from "./server.ts";

/** `block-commit` with every 7.2 argument, in qemu's order. */
export const BLOCK_COMMIT: QmpCommandSchema = {
  name: "block-commit",
  args: q.struct("block-commit", {
    "*job-id": q.str,
    device: q.str,
    "*base-node": q.str,
    "*base": q.str,
    "*top-node": q.str,
    "*top": q.str,
    "*backing-file": q.str,
    "*speed": { type: q.int, default: 0 },
    "*on-error": { type: q.enumOf("BlockdevOnError", BLOCKDEV_ON_ERROR), default: "report" },
    "*filter-node-name": q.str,
    "*auto-finalize": { type: q.bool, default: true },
    "*auto-dismiss": { type: q.bool, default: true },
  }),
  returns: "{}",
};

/** `block-commit`'s arguments after the schema's checks (defaults filled in). */
interface BlockCommitArgs {
  "job-id"?: string;
  device: string;
  "base-node"?: string;
  base?: string;
  "top-node"?: string;
  top?: string;
  "backing-file"?: string;
  speed: number;
  "on-error": OnErrorPolicy;
  "filter-node-name"?: string;
  "auto-finalize": boolean;
  "auto-dismiss": boolean;
}

/**
 * Declares and wires `block-commit`.
 *
 * @example
 * ```ts
 * import { BlockGraph, JobRegistry } from "../block/mod.ts";
 * import { QmpServer } from "./server.ts";
 * import { registerCommitCommand } from "./commit_command.ts";
 * const server = new QmpServer();
 * registerCommitCommand(server, { graph: new BlockGraph(), jobs: new JobRegistry() });
 * console.log(server.commands.find("block-commit") !== undefined); // true
 * ```
 */
export function registerCommitCommand(
  server: QmpServer,
  context: { graph: BlockGraph; jobs: JobRegistry },
): void {
  const { graph, jobs } = context;
  server.commands.declare(BLOCK_COMMIT);
  server.commands.handle<BlockCommitArgs>(
    "block-commit",
    withQmpErrors((args) => {
      const device = graph.getDevice(args.device);
      const node = device?.top ?? graph.getNode(args.device);
      // The lookup comes first: libvirt tells a missing device by this class.
      if (!node) throw new QmpError("DeviceNotFound", `Device '${args.device}' not found`);
      if (!isRootNode(graph, node)) throw new QmpError("GenericError", "Need a root block node");
      startCommit(jobs, device ?? node, {
        ...(args["job-id"] !== undefined ? { jobId: args["job-id"] } : {}),
        ...(args["top-node"] !== undefined ? { topNode: args["top-node"] } : {}),
        ...(args.top !== undefined ? { top: args.top } : {}),
        ...(args["base-node"] !== undefined ? { baseNode: args["base-node"] } : {}),
        ...(args.base !== undefined ? { base: args.base } : {}),
        ...(args["backing-file"] !== undefined ? { backingFile: args["backing-file"] } : {}),
        ...(args["filter-node-name"] !== undefined
          ? { filterNodeName: args["filter-node-name"] }
          : {}),
        speed: args.speed,
        onError: args["on-error"],
        autoFinalize: args["auto-finalize"],
        autoDismiss: args["auto-dismiss"],
        graph,
      });
      return {};
    }),
  );
}
