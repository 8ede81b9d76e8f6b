/**
 * `blockdev-add` and `blockdev-del` as qemu-storage-daemon 7.2 answers them,
 * for the drivers qedstream has.
 *
 * Building a node is the daemon's (`daemon/graph_builder.ts`, which checks
 * the options with qemu's texts); this layer converts the QMP arguments and
 * makes `blockdev-del`'s checks in qemu's order:
 *
 * 1. `Failed to find node with node-name='X'`;
 * 2. `Node X is in use` when a job holds it through a block backend (a
 *    commit's top and base);
 * 3. `Node 'X' is busy: …` when a job blocks it;
 * 4. `Node X is not owned by the monitor` for a node opened implicitly (a
 *    backing file named in a header) or defined inline in another node's
 *    options (`file.node-name=X`, a quorum's `children.0.node-name=X`);
 * 5. `Block device X is in use` while another node uses it as a child.
 *
 * @module
 */

import { CommitJob } from "../block/commit_job.ts";
import type { BlockGraph } from "../block/graph.ts";
import { nodeBlocker } from "../block/graph.ts";
import type { JobRegistry } from "../block/job_registry.ts";
import type { BlockNode } from "../block/node.ts";
import { withQmpErrors } from "./block_error_map.ts";
import { QmpError } from "./error.ts";
import { isJsonObject, type JsonValue, QNum } from "./json_value.ts";
import { nodeOrigin } from "./named_block_nodes.ts";
import { parentNodes } from "./_node_parents.ts";
import { q } from "./qapi_type.ts";
import type { QmpServer } from "./server.ts";

/** What the daemon lends the commands: building and releasing nodes. */
export interface BlockdevAdmin {
  /** Every member name `blockdev-add` may carry (any driver): others are `Parameter 'x' is unexpected`. */
  readonly members: readonly string[];
  /** Checks `options` (qemu's texts) and builds the node and its inline children. */
  add(options: Record<string, unknown>): Promise<BlockNode>;
  /** Releases a node added by `--blockdev` or `blockdev-add` (not its children). */
  remove(nodeName: string): Promise<void>;
}

/** Converts QMP values to plain JSON values (numbers as numbers). */
function plain(value: JsonValue): unknown {
  if (value instanceof QNum) return value.toNumber();
  if (Array.isArray(value)) return value.map(plain);
  if (isJsonObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  return value;
}

/** The commit job holding `node` through a block backend (its device, top or base), if any. */
function commitBackend(jobs: JobRegistry, node: BlockNode): CommitJob | undefined {
  return jobs.list().find((j): j is CommitJob =>
    j instanceof CommitJob && ((j.top === node && !j.active) || j.base === node)
  );
}

/**
 * Declares and wires `blockdev-add` and `blockdev-del`.
 *
 * @example
 * ```ts ignore
 * registerBlockdevCommands(server, { graph, jobs, admin });
 * ```
 */
export function registerBlockdevCommands(
  server: QmpServer,
  context: { graph: BlockGraph; jobs: JobRegistry; admin: BlockdevAdmin },
): void {
  const { graph, jobs, admin } = context;
  const members: Record<string, typeof q.any> = { driver: q.str };
  for (const m of admin.members) if (m !== "driver") members[`*${m}`] = q.any;
  server.commands.declare({
    name: "blockdev-add",
    args: q.struct("BlockdevOptions", members),
    returns: "{}",
  });
  server.commands.declare({
    name: "blockdev-del",
    args: q.struct("blockdev-del", { "node-name": q.str }),
    returns: "{}",
  });
  server.commands.handle<Record<string, JsonValue>>(
    "blockdev-add",
    withQmpErrors(async (args) => {
      const options: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(args)) if (v !== undefined) options[k] = plain(v);
      await admin.add(options);
      return {};
    }),
  );
  server.commands.handle<{ "node-name": string }>(
    "blockdev-del",
    withQmpErrors(async (args) => {
      const name = args["node-name"];
      const node = graph.getNode(name);
      const fail = (desc: string) => {
        throw new QmpError("GenericError", desc);
      };
      if (!node) return fail(`Failed to find node with node-name='${name}'`);
      if (commitBackend(jobs, node) || graph.hasBackend(node)) fail(`Node ${name} is in use`);
      const blocker = nodeBlocker(node);
      if (blocker !== undefined) fail(`Node '${name}' is busy: ${blocker}`);
      const origin = nodeOrigin(node);
      if (origin?.implicit || origin?.inline) fail(`Node ${name} is not owned by the monitor`);
      if (parentNodes(graph, node).length > 0) fail(`Block device ${name} is in use`);
      await admin.remove(name);
      return {};
    }),
  );
}
