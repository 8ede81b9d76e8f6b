/**
 * What the daemon lends `blockdev-add` / `blockdev-del`
 * (`qmp/blockdev_commands.ts`): option checking with qemu's texts, then the
 * {@linkcode GraphBuilder}.
 *
 * @module
 */

import type { BlockGraph } from "../block/graph.ts";
import type { JobRegistry } from "../block/job_registry.ts";
import { type BlockdevAdmin, registerBlockdevCommands } from "../qmp/blockdev_commands.ts";
import type { QmpServer } from "../qmp/server.ts";
import { blockdevOptions, checkBlockdevOptions } from "./blockdev_schema.ts";
import type { GraphBuilder } from "./graph_builder.ts";

/** Every member name of the supported drivers' options. */
function memberNames(): string[] {
  const names = new Set<string>();
  if (blockdevOptions.kind === "union") {
    for (const k of Object.keys(blockdevOptions.base)) names.add(k);
    for (const v of Object.values(blockdevOptions.variants)) {
      for (const k of Object.keys(v)) names.add(k);
    }
  }
  return [...names];
}

/**
 * The {@linkcode BlockdevAdmin} over `builder`.
 *
 * @example
 * ```ts ignore
 * registerBlockdevCommands(qmp, { graph, jobs, admin: blockdevAdmin(builder) });
 * ```
 */
export function blockdevAdmin(builder: GraphBuilder): BlockdevAdmin {
  return {
    members: memberNames(),
    add: (options) => builder.add(checkBlockdevOptions(options, false)),
    remove: (nodeName) => builder.remove(nodeName),
  };
}

/**
 * Wires `blockdev-add` and `blockdev-del` to a daemon's graph, jobs and
 * node builder.
 *
 * @example
 * ```ts ignore
 * registerDaemonBlockdevCommands(qmp, { graph, jobs, builder });
 * ```
 */
export function registerDaemonBlockdevCommands(
  server: QmpServer,
  context: { graph: BlockGraph; jobs: JobRegistry; builder: GraphBuilder },
): void {
  registerBlockdevCommands(server, { ...context, admin: blockdevAdmin(context.builder) });
}
