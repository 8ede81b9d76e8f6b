/**
 * The seed's own verbs: `qedstream streamdisk SOCKET DISK (--start | --stop
 * | --one OFFSET)` over `streamDisk()`, and `qedstream streamdiskinfo
 * SOCKET` over `streamDiskInfo()`, printing the prototype's monitor texts
 * (`Streaming device <dev>: Completed <cur> of <end> bytes`, `No active
 * stream`).
 *
 * @module
 */

import { resolveDisk, streamDisk, StreamDiskFlags, streamDiskInfo } from "../manage/mod.ts";
import {
  has,
  parseBandwidth,
  parseNumber,
  parseVirshArgs,
  runVirsh,
  VirshError,
  withConnection,
} from "./_virsh.ts";
import type { CliOutput } from "./output.ts";

/** The prototype's progress line. */
function progressLine(device: string, cur: number, end: number): string {
  return `Streaming device ${device}: Completed ${cur} of ${end} bytes\n`;
}

/**
 * `streamdisk`: `--start` begins a full-device stream (optionally
 * `--bandwidth N [--bytes]`), `--stop` stops it (both print nothing, as the
 * prototype's monitor did), `--one OFFSET` streams the piece at OFFSET and
 * prints the progress line whose `<cur>` is the offset to continue from.
 *
 * @example
 * ```ts ignore
 * import { BufferedOutput } from "./output.ts";
 * await streamdiskCommand(["unix:/tmp/qmp.sock", "ov", "--one", "0"], new BufferedOutput());
 * ```
 */
export function streamdiskCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  return runVirsh(out, async () => {
    const args = parseVirshArgs(argv, {
      verb: "streamdisk",
      operands: ["socket", "path"],
      required: 2,
      values: ["one", "bandwidth"],
      flags: ["start", "stop", "bytes"],
    });
    const modes = ["start", "stop", "one"].filter((m) => has(args, m));
    if (modes.length !== 1) throw new VirshError("One of --start, --stop, or --one is required");
    const path = args.values.get("path")!;
    const bytes = args.flags.has("bytes");
    const bandwidth = args.values.get("bandwidth");
    const one = args.values.get("one");
    const offset = one === undefined ? 0 : parseNumber(one, "one");
    return await withConnection(args.values.get("socket")!, async (conn) => {
      if (modes[0] === "start") {
        await streamDisk(conn, path, 0, StreamDiskFlags.START, {
          bytes,
          ...(bandwidth !== undefined ? { bandwidth: parseBandwidth(bandwidth, bytes) } : {}),
        });
      } else if (modes[0] === "stop") {
        await streamDisk(conn, path, 0, StreamDiskFlags.STOP);
      } else {
        const next = await streamDisk(conn, path, offset, StreamDiskFlags.ONE);
        const disk = await resolveDisk(conn, path);
        out.stdout(progressLine(disk.target, next, disk.size));
      }
      return 0;
    });
  });
}

/** `streamdiskinfo`: one progress line per active full-device stream, or `No active stream`. */
export function streamdiskinfoCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  return runVirsh(out, async () => {
    const args = parseVirshArgs(argv, {
      verb: "streamdiskinfo",
      operands: ["socket"],
      required: 1,
      values: [],
      flags: [],
    });
    return await withConnection(args.values.get("socket")!, async (conn) => {
      const streams = await streamDiskInfo(conn);
      if (streams.length === 0) out.stdout("No active stream\n");
      for (const s of streams) out.stdout(progressLine(s.path, s.offset, s.size));
      return 0;
    });
  });
}
