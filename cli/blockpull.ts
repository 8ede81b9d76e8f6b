/**
 * `qedstream blockpull SOCKET DISK [--bandwidth N] [--bytes] [--base FILE]
 * [--wait [--verbose] [--timeout SECONDS] [--async]]`: virsh's `blockpull`
 * against a QMP socket, with virsh 9.0's options, texts and exit codes.
 *
 * @module
 */

import { BlockJobStatus, blockJobWait, blockPull, type BlockPullOptions } from "../manage/mod.ts";
import {
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

const LABEL = "Block Pull";

/**
 * Starts a block pull; with `--wait`, waits for it as virsh does (progress
 * on standard error with `--verbose`, the job aborted after `--timeout`
 * seconds or on Ctrl-C) and prints `Pull complete`, `Pull aborted` or
 * `Pull failed`. Exit 0 when the pull was started or completed, else 1.
 *
 * @example
 * ```ts ignore
 * import { BufferedOutput } from "./output.ts";
 * await blockpullCommand(["unix:/tmp/qmp.sock", "ov", "--wait"], new BufferedOutput());
 * ```
 */
export function blockpullCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  return runVirsh(out, async () => {
    const args = parseVirshArgs(argv, {
      verb: "blockpull",
      operands: ["socket", "path", "bandwidth", "base"],
      required: 2,
      values: ["timeout"],
      flags: ["bytes", "wait", "verbose", "async"],
    });
    requireOption(args, "verbose", "wait");
    requireOption(args, "async", "wait");
    const bytes = args.flags.has("bytes");
    const options: BlockPullOptions = { bytes };
    const bandwidth = args.values.get("bandwidth");
    if (bandwidth !== undefined) options.bandwidth = parseBandwidth(bandwidth, bytes);
    const base = args.values.get("base");
    if (base !== undefined) options.base = base;
    const timeoutText = args.values.get("timeout");
    const timeout = timeoutText === undefined ? 0 : parseNumber(timeoutText, "timeout");
    if (timeout > 2147483) throw new VirshError("timeout is too big");
    const path = args.values.get("path")!;
    return await withConnection(args.values.get("socket")!, async (conn) => {
      await blockPull(conn, path, options);
      if (!has(args, "wait")) {
        out.stdout(`${LABEL} started\n`);
        return 0;
      }
      const verbose = args.flags.has("verbose");
      const interrupt = new AbortController();
      const onInt = () => interrupt.abort();
      Deno.addSignalListener("SIGINT", onInt);
      try {
        const { status } = await blockJobWait(conn, path, {
          ...(timeout > 0 ? { timeout: timeout * 1000 } : {}),
          async: args.flags.has("async"),
          signal: interrupt.signal,
          ...(verbose
            ? { onProgress: (i) => out.stderr(jobProgress(LABEL, i.end - i.cur, i.end)) }
            : {}),
        });
        const done = status === BlockJobStatus.COMPLETED || status === BlockJobStatus.READY;
        if (verbose && done) out.stderr(jobProgress(LABEL, 0, 1));
        if (done) {
          out.stdout("\nPull complete\n");
          return 0;
        }
        out.stdout(status === BlockJobStatus.CANCELED ? "\nPull aborted\n" : "\nPull failed\n");
        return 1;
      } finally {
        Deno.removeSignalListener("SIGINT", onInt);
      }
    });
  });
}
