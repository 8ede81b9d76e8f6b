/**
 * `qedstream rebase -u`: changes the backing file named in a QED header
 * without touching data, like `qemu-img rebase -u`.
 *
 * ```
 * qedstream rebase -u [-f FMT] -b BACKING [-F FMT] FILE
 * qedstream rebase -u -b '' FILE        # removes the backing link
 * ```
 *
 * qemu 7.2's rules: a non-empty backing name needs `-F`; `-b ''` (or no
 * `-b` at all) removes the link; the new backing file is not opened.
 *
 * @module
 */

import { QedImage } from "../qed/image.ts";
import { imageFormat, lastValue, parseArgs } from "./args.ts";
import { CliError, describeError } from "./error.ts";
import { KNOWN_FORMATS } from "./create.ts";
import { openImage } from "./open.ts";
import type { CliOutput } from "./output.ts";

/** What `rebase` was asked to do. */
export interface RebaseOptions {
  /** The image whose header changes. */
  file: string;
  /** The new backing name; `""` removes the link. */
  backingFile: string;
  /** The new backing format (`-F`). */
  backingFormat?: string;
  /** The format of `file` (`-f`). */
  format?: "qed" | "raw";
}

/**
 * Reads `rebase`'s command line.
 *
 * @throws {CliError} with qemu-img's text for each mistake.
 *
 * @example
 * ```ts
 * import { parseRebaseArgs } from "./rebase.ts";
 * console.log(parseRebaseArgs(["-u", "-b", "", "ov.qed"]));
 * // { file: "ov.qed", backingFile: "" }
 * ```
 */
export function parseRebaseArgs(argv: readonly string[]): RebaseOptions {
  const args = parseArgs(argv, { shortValues: "fbFto", shortFlags: "uqp" });
  const [file, extra] = args.operands;
  if (file === undefined) throw new CliError("Expecting one image file name");
  if (extra !== undefined) throw new CliError(`Unexpected argument: ${extra}`);
  const b = lastValue(args, "b");
  if (!args.flags.has("u")) {
    if (b === undefined) {
      throw new CliError("Must specify backing file (-b) or use unsafe mode (-u)");
    }
    throw new CliError("Only unsafe rebase (-u) is supported: add -u to change the name only");
  }
  const options: RebaseOptions = { file, backingFile: b ?? "" };
  const F = lastValue(args, "F");
  if (F !== undefined) {
    if (!KNOWN_FORMATS.includes(F)) throw new CliError(`Invalid format name: '${F}'`);
    options.backingFormat = F;
  }
  const f = imageFormat(lastValue(args, "f"));
  if (f !== undefined) options.format = f;
  return options;
}

/** Runs `rebase`. */
export async function rebaseCommand(argv: readonly string[], _out: CliOutput): Promise<number> {
  const options = parseRebaseArgs(argv);
  const opened = await openImage(options.file, {
    readOnly: false,
    backing: false,
    format: options.format,
  });
  const failed = (reason: string, cause?: unknown) =>
    new CliError(`Could not change the backing file to '${options.backingFile}': ${reason}`, {
      cause,
    });
  try {
    if (options.backingFile !== "" && options.backingFormat === undefined) {
      throw failed("backing format must be specified");
    }
    if (!(opened.image instanceof QedImage)) throw failed("Operation not supported");
    try {
      await opened.image.changeBackingFile(
        options.backingFile === "" ? null : options.backingFile,
        ...(options.backingFile === "" ? [] : [options.backingFormat!]),
      );
    } catch (e) {
      throw failed(describeError(e), e);
    }
  } finally {
    await opened.close();
  }
  return 0;
}
