/**
 * `qedstream io`: qemu-io's `read`, `write` and `write -z` commands on an
 * image, with qemu-io's reports.
 *
 * ```
 * qedstream io [-f FMT] [-r] FILE -c CMD [-c CMD …]
 *   read  [-qv] [-P PATTERN] OFF LEN   read, and with -P verify every byte
 *   write [-q] [-P PATTERN] OFF LEN    write PATTERN (default 0xcd)
 *   write [-q] -z OFF LEN              write zeros (zero clusters where aligned)
 * ```
 *
 * Every command runs even after one fails (as in qemu-io); the exit code is
 * 1 when any failed. Reports go to standard output; failures are one line
 * on standard error (qemu-io prints those on standard output too).
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";
import { systemClock } from "../io/clock.ts";
import type { QedImage } from "../qed/image.ts";
import type { RawImage } from "../qed/raw_image.ts";
import { imageFormat, lastValue, parseArgs, type ParsedArgs } from "./args.ts";
import { CliError, describeError } from "./error.ts";
import { openImage } from "./open.ts";
import type { CliOutput } from "./output.ts";
import { formatIoSize, parseSize } from "./size.ts";

/** The largest request qemu-io accepts (`BDRV_REQUEST_MAX_BYTES`). */
export const IO_MAX_LENGTH = 2147483136;

/** One parsed qemu-io command. */
export type IoCommand =
  | {
    op: "read";
    offset: number;
    length: number;
    pattern?: number;
    quiet: boolean;
    verbose: boolean;
  }
  | { op: "write"; offset: number; length: number; pattern: number; quiet: boolean }
  | { op: "write-zeroes"; offset: number; length: number; quiet: boolean };

const USAGE = {
  read: "read [-qv] [-P pattern] off len -- reads a number of bytes at a specified offset",
  write: "write [-qz] [-P pattern] off len -- writes a number of bytes at a specified offset",
};

/** A pattern byte: decimal, `0x` hexadecimal or `0` octal, 0 to 255. */
export function parsePattern(text: string): number {
  let value = NaN;
  if (/^0[xX][0-9a-fA-F]+$/.test(text)) value = parseInt(text.slice(2), 16);
  else if (/^0[0-7]*$/.test(text)) value = parseInt(text, 8);
  else if (/^[1-9][0-9]*$/.test(text)) value = parseInt(text, 10);
  if (!(value >= 0 && value <= 255)) throw new CliError(`${text} is not a valid pattern byte`);
  return value;
}

/** A qemu-io number (`4k`, `0x1000`, `1.5M`). */
export function parseIoNumber(text: string): number {
  const n = parseSize(text);
  if (n === null || n > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CliError(
      `Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${text}`,
    );
  }
  return Number(n);
}

/**
 * Parses one `-c` command (words separated by white space, as qemu-io splits them).
 *
 * @throws {CliError} with qemu-io's text.
 *
 * @example
 * ```ts
 * import { parseIoCommand } from "./io.ts";
 * console.log(parseIoCommand("write -P 0xab 4k 4k"));
 * // { op: "write", offset: 4096, length: 4096, pattern: 171, quiet: false }
 * ```
 */
export function parseIoCommand(line: string): IoCommand {
  const words = line.trim().split(/\s+/).filter((w) => w !== "");
  const [name, ...rest] = words;
  if (name === undefined) throw new CliError("empty command");
  if (name !== "read" && name !== "write" && name !== "r" && name !== "w") {
    throw new CliError(`command "${name}" not found`);
  }
  const op = name === "r" || name === "read" ? "read" : "write";
  let args: ParsedArgs;
  try {
    args = parseArgs(
      rest,
      op === "read"
        ? { shortValues: "P", shortFlags: "qv" }
        : { shortValues: "P", shortFlags: "qz" },
    );
  } catch {
    throw new CliError(USAGE[op]);
  }
  if (args.operands.length < 2) {
    throw new CliError(
      `bad argument count ${args.operands.length} to ${op}, expected at least 2 arguments`,
    );
  }
  if (args.operands.length > 2) throw new CliError(USAGE[op]);
  const patternText = lastValue(args, "P");
  if (op === "write" && args.flags.has("z") && patternText !== undefined) {
    throw new CliError("Only one of -z, -P, and -s can be specified at the same time");
  }
  const pattern = patternText === undefined ? undefined : parsePattern(patternText);
  const offset = parseIoNumber(args.operands[0]!);
  const length = parseIoNumber(args.operands[1]!);
  if (length > IO_MAX_LENGTH) {
    throw new CliError(`length cannot exceed ${IO_MAX_LENGTH}, given ${length}`);
  }
  const quiet = args.flags.has("q");
  if (op === "read") {
    return {
      op,
      offset,
      length,
      quiet,
      verbose: args.flags.has("v"),
      ...(pattern === undefined ? {} : { pattern }),
    };
  }
  if (args.flags.has("z")) return { op: "write-zeroes", offset, length, quiet };
  return { op, offset, length, pattern: pattern ?? 0xcd, quiet };
}

/** C's `%02u.%02u sec` style elapsed time of qemu-io's report. */
function formatElapsed(ms: number): string {
  const centis = Math.floor(ms / 10);
  const seconds = Math.floor(centis / 100);
  const frac = String(centis % 100).padStart(2, "0");
  if (seconds < 60) return `${String(seconds).padStart(2, "0")}.${frac} sec`;
  const h = Math.floor(seconds / 3600);
  const m = Math.floor(seconds / 60) % 60;
  const s = String(seconds % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}.${frac}` : `${m}:${s}.${frac}`;
}

/** A finished request, as qemu-io reports it. */
export interface IoReport {
  /** `read` or `wrote`. */
  verb: "read" | "wrote";
  /** Guest offset of the request. */
  offset: number;
  /** Its length in bytes. */
  length: number;
  /** How long it took, in milliseconds. */
  elapsedMs: number;
}

/**
 * qemu-io's two-line report of a finished request: `wrote 4096/4096 bytes at
 * offset 0` and the size, time and rate.
 *
 * @example
 * ```ts
 * import { formatIoReport } from "./io.ts";
 * console.log(formatIoReport({ verb: "wrote", offset: 0, length: 4096, elapsedMs: 1 }));
 * // wrote 4096/4096 bytes at offset 0
 * // 4 KiB, 1 ops; 00.00 sec (3.906 MiB/sec and 1000.0000 ops/sec)
 * ```
 */
export function formatIoReport({ verb, offset, length, elapsedMs }: IoReport): string {
  const seconds = Math.max(elapsedMs, 1e-3) / 1000;
  return `${verb} ${length}/${length} bytes at offset ${offset}\n` +
    `${formatIoSize(length)}, 1 ops; ${formatElapsed(elapsedMs)} ` +
    `(${formatIoSize(length / seconds)}/sec and ${(1 / seconds).toFixed(4)} ops/sec)\n`;
}

/** qemu-io's `read -v` hex dump. */
export function formatHexDump(offset: number, data: Uint8Array): string {
  let text = "";
  for (let i = 0; i < data.length; i += 16) {
    const line = data.subarray(i, i + 16);
    text += `${(offset + i).toString(16).padStart(8, "0")}:  `;
    for (const b of line) text += `${b.toString(16).padStart(2, "0")} `;
    text += " ";
    for (const b of line) {
      const c = String.fromCharCode(b);
      text += /[0-9A-Za-z]/.test(c) ? c : ".";
    }
    text += "\n";
  }
  return text;
}

/** Where {@linkcode runIoCommand} reports, and the clock that times it. */
export interface RunIoOptions {
  /** Where reports and failures are printed. */
  out: CliOutput;
  /** Times each request for the report. Default {@linkcode systemClock}. */
  clock?: Clock;
}

/** Runs one command on an open image; returns `false` when it failed (already reported). */
export async function runIoCommand(
  image: QedImage | RawImage,
  command: IoCommand,
  { out, clock = systemClock }: RunIoOptions,
): Promise<boolean> {
  const { offset, length } = command;
  const what = command.op === "read" ? "read" : "write";
  if (offset + length > image.size) {
    // qemu's generic block layer refuses a request past the end with EIO.
    out.stderr(`${what} failed: Input/output error\n`);
    return false;
  }
  const start = clock.now();
  let ok = true;
  try {
    if (command.op === "read") {
      const buf = new Uint8Array(length);
      await image.read(offset, buf);
      if (command.pattern !== undefined && buf.some((b) => b !== command.pattern)) {
        out.stderr(`Pattern verification failed at offset ${offset}, ${length} bytes\n`);
        ok = false;
      }
      if (command.verbose) out.stdout(formatHexDump(offset, buf));
    } else if (command.op === "write") {
      await image.write(offset, new Uint8Array(length).fill(command.pattern));
    } else {
      await image.writeZeroes(offset, length);
    }
  } catch (e) {
    out.stderr(`${what} failed: ${describeError(e)}\n`);
    return false;
  }
  if (!command.quiet) {
    const verb = command.op === "read" ? "read" : "wrote";
    out.stdout(formatIoReport({ verb, offset, length, elapsedMs: clock.now() - start }));
  }
  return ok;
}

/** Runs `io`. */
export async function ioCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  const args = parseArgs(argv, { shortValues: "cf", shortFlags: "r" });
  const [file, extra] = args.operands;
  if (file === undefined) throw new CliError("Expecting one image file name");
  if (extra !== undefined) throw new CliError(`Unexpected argument: ${extra}`);
  const lines = args.values.get("c") ?? [];
  if (lines.length === 0) throw new CliError("No command given: use -c 'read 0 4k' and the like");
  const opened = await openImage(file, {
    readOnly: args.flags.has("r"),
    format: imageFormat(lastValue(args, "f")),
  });
  let failed = false;
  try {
    for (const line of lines) {
      let command: IoCommand;
      try {
        command = parseIoCommand(line);
      } catch (e) {
        out.stderr(`${describeError(e)}\n`);
        failed = true;
        continue;
      }
      if (!(await runIoCommand(opened.image, command, { out }))) failed = true;
    }
    await opened.image.flush();
  } finally {
    await opened.close();
  }
  return failed ? 1 : 0;
}
