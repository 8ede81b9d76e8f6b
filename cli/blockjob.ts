/**
 * `qedstream blockjob SOCKET DISK (--abort [--async] | --info [--raw]
 * [--bytes] | --bandwidth N [--bytes])`: virsh's `blockjob` against a QMP
 * socket, with virsh 9.0's options and output.
 *
 * @module
 */

import {
  blockJobAbort,
  blockJobSetSpeed,
  BlockJobType,
  getBlockJobInfo,
  type QmpConnection,
} from "../manage/mod.ts";
import {
  exclusiveOptions,
  has,
  jobProgress,
  parseBandwidth,
  parseVirshArgs,
  runVirsh,
  withConnection,
} from "./_virsh.ts";
import type { CliOutput } from "./output.ts";

/** virsh's job labels by libvirt job type (also `--raw`'s `type=`). */
const LABELS = [
  "Unknown job",
  "Block Pull",
  "Block Copy",
  "Block Commit",
  "Active Block Commit",
  "Backup",
];

/** virsh's `vshPrettyCapacity`: a value and its binary unit. */
export function prettyCapacity(bytes: number): [number, string] {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  for (const unit of units) {
    if (value < 1024) return [value, unit];
    value /= 1024;
  }
  return [value, "EiB"];
}

/**
 * Shows, re-throttles or aborts the block job of a disk. `--info` (the
 * default) prints virsh's progress line on standard error and the bandwidth
 * on standard output, or `No current block job for DISK`; `--raw` prints
 * ` type=… bandwidth=… cur=… end=…`.
 *
 * @example
 * ```ts ignore
 * import { BufferedOutput } from "./output.ts";
 * await blockjobCommand(["unix:/tmp/qmp.sock", "ov", "--info"], new BufferedOutput());
 * ```
 */
export function blockjobCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  return runVirsh(out, async () => {
    const args = parseVirshArgs(argv, {
      verb: "blockjob",
      operands: ["socket", "path", "bandwidth"],
      required: 2,
      values: [],
      flags: ["abort", "async", "info", "raw", "bytes"],
    });
    for (const other of ["abort", "async", "bandwidth"]) {
      exclusiveOptions(args, "raw", other);
      exclusiveOptions(args, "info", other);
    }
    exclusiveOptions(args, "bytes", "abort");
    exclusiveOptions(args, "bytes", "async");
    const path = args.values.get("path")!;
    const bytes = args.flags.has("bytes");
    return await withConnection(args.values.get("socket")!, async (conn) => {
      const bandwidth = args.values.get("bandwidth");
      if (bandwidth !== undefined) {
        await blockJobSetSpeed(conn, path, parseBandwidth(bandwidth, bytes), { bytes });
        return 0;
      }
      if (has(args, "abort") || has(args, "async")) {
        await blockJobAbort(conn, path, { async: args.flags.has("async") });
        return 0;
      }
      await printInfo(conn, path, args.flags.has("raw"), bytes, out);
      return 0;
    });
  });
}

async function printInfo(
  conn: QmpConnection,
  path: string,
  raw: boolean,
  bytes: boolean,
  out: CliOutput,
): Promise<void> {
  // virsh asks for bytes/s unless --raw without --bytes asks for MiB/s.
  const info = await getBlockJobInfo(conn, path, { bytes: bytes || !raw });
  if (!info) {
    if (!raw) out.stdout(`No current block job for ${path}\n`);
    return;
  }
  const label = LABELS[info.type] ?? LABELS[BlockJobType.UNKNOWN]!;
  if (raw) {
    out.stdout(
      ` type=${label}\n bandwidth=${info.bandwidth}\n cur=${info.cur}\n end=${info.end}\n`,
    );
    return;
  }
  out.stderr(jobProgress(label, info.end - info.cur, info.end));
  if (info.bandwidth) {
    const [value, unit] = prettyCapacity(info.bandwidth);
    out.stdout(`    Bandwidth limit: ${info.bandwidth} bytes/s (${value.toFixed(3)} ${unit}/s)`);
  }
  out.stdout("\n");
}
