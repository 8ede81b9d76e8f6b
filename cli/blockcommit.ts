/**
 * `qedstream blockcommit SOCKET DISK [--bandwidth N] [--bytes] [--base FILE]
 * [--top FILE] [--active] [--wait [--verbose] [--timeout SECONDS]]
 * [--pivot | --keep-overlay]`: virsh's `blockcommit` against a QMP socket,
 * with virsh 9.0's texts (`--pivot` and `--keep-overlay` need `--active`
 * and imply `--wait`).
 *
 * @module
 */

import { blockCommit, type BlockCommitOptions, blockCommitWait } from "../manage/block_commit.ts";
import { BlockJobStatus } from "../manage/block_job_event.ts";
import {
  exclusiveOptions,
  has,
  jobProgress,
  parseBandwidth,
  parseNumber,
  parseVirshArgs,
  requireOption,
  runVirsh,
  VirshError,
  withConnection,
} from "./_virsh.ts";
import type { CliOutput } from "./output.ts";

/**
 * Starts a block commit; with `--wait`, waits for it as virsh does and
 * prints `Commit complete`, `Now in synchronized phase`, `Successfully
 * pivoted`, `Commit complete, overlay image kept`, `Commit aborted` or
 * `Commit failed`. Exit 0 on success, else 1.
 *
 * @example
 * ```ts ignore
 * import { BufferedOutput } from "./output.ts";
 * await blockcommitCommand(["unix:/tmp/qmp.sock", "top", "--active", "--pivot"], new BufferedOutput());
 * ```
 */
export function blockcommitCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  return runVirsh(out, async () => {
    const args = parseVirshArgs(argv, {
      verb: "blockcommit",
      operands: ["socket", "path", "bandwidth", "base", "top"],
      required: 2,
      values: ["timeout"],
      flags: ["bytes", "active", "wait", "verbose", "pivot", "keep-overlay"],
    });
    exclusiveOptions(args, "pivot", "keep-overlay");
    requireOption(args, "pivot", "active");
    requireOption(args, "keep-overlay", "active");
    const wait = has(args, "wait") || has(args, "pivot") || has(args, "keep-overlay");
    if (has(args, "verbose") && !wait) {
      throw new VirshError("Option --wait is required by option --verbose");
    }
    const bytes = args.flags.has("bytes");
    const label = args.flags.has("active") ? "Active Block Commit" : "Block Commit";
    const options: BlockCommitOptions = { bytes, active: args.flags.has("active") };
    const bandwidth = args.values.get("bandwidth");
    if (bandwidth !== undefined) options.bandwidth = parseBandwidth(bandwidth, bytes);
    const base = args.values.get("base");
    if (base !== undefined) options.base = base;
    const top = args.values.get("top");
    if (top !== undefined) options.top = top;
    const timeoutText = args.values.get("timeout");
    const timeout = timeoutText === undefined ? 0 : parseNumber(timeoutText, "timeout");
    return await withConnection(args.values.get("socket")!, async (conn) => {
      const started = await blockCommit(conn, args.values.get("path")!, options);
      if (!wait) {
        out.stdout(`${label} started\n`);
        return 0;
      }
      const verbose = args.flags.has("verbose");
      const outcome = await blockCommitWait(conn, started, {
        pivot: args.flags.has("pivot"),
        keepOverlay: args.flags.has("keep-overlay"),
        ...(timeout > 0 ? { timeout: timeout * 1000 } : {}),
        ...(verbose
          ? {
            onProgress: (cur: number, end: number) =>
              out.stderr(jobProgress(label, end - cur, end)),
          }
          : {}),
      });
      const ok = outcome.status === BlockJobStatus.COMPLETED ||
        outcome.status === BlockJobStatus.READY;
      if (verbose && ok) out.stderr(jobProgress(label, 0, 1));
      if (outcome.status === BlockJobStatus.READY) out.stdout("\nNow in synchronized phase\n");
      else if (outcome.pivoted) out.stdout("\nSuccessfully pivoted\n");
      else if (ok && args.flags.has("keep-overlay")) {
        out.stdout("\nCommit complete, overlay image kept\n");
      } else if (ok) out.stdout("\nCommit complete\n");
      else if (outcome.status === BlockJobStatus.CANCELED) out.stdout("\nCommit aborted\n");
      else out.stdout("\nCommit failed\n");
      return ok ? 0 : 1;
    });
  });
}
