/**
 * `qedstream verify`: checks an image (typically an overlay a stream has
 * just made independent) against its template's checksum manifest, chunk by
 * chunk, without the template.
 *
 * ```
 * qedstream verify [-q] [-f qed|raw] [--output json] OVERLAY MANIFEST
 * ```
 *
 * Exit 0 when every chunk matches, 1 at the first mismatch (its offset is
 * printed), 2 on an error (unreadable image or manifest, sizes differ).
 * The image is read through its backing chain if it still has one; guest
 * writes made after streaming are mismatches, as they should be.
 *
 * @module
 */

import { verifyManifest } from "../block/manifest.ts";
import { imageFormat, lastValue, outputFormat, parseArgs } from "./args.ts";
import { loadManifestFile } from "./_extras_files.ts";
import { CliError, describeError } from "./error.ts";
import { openImage } from "./open.ts";
import type { CliOutput } from "./output.ts";
import { formatIoSize } from "./size.ts";

/** Exit code of a verification that could not run. */
export const VERIFY_ERROR_EXIT_CODE = 2;

/** The `verify` verb. */
export async function verifyCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  let overlay: string | undefined;
  let manifestPath: string | undefined;
  let args;
  let json: boolean;
  try {
    args = parseArgs(argv, { shortValues: "f", shortFlags: "q", longValues: ["output"] });
    json = outputFormat(args) === "json";
    [overlay, manifestPath] = args.operands;
    if (overlay === undefined || manifestPath === undefined || args.operands.length > 2) {
      throw new CliError("Expecting two arguments: OVERLAY MANIFEST");
    }
  } catch (e) {
    throw new CliError(describeError(e), { exitCode: VERIFY_ERROR_EXIT_CODE, cause: e });
  }
  const quiet = args.flags.has("q");
  const manifest = await loadManifestFile(manifestPath, VERIFY_ERROR_EXIT_CODE);
  let opened;
  try {
    opened = await openImage(overlay, { format: imageFormat(lastValue(args, "f")) });
  } catch (e) {
    throw new CliError(describeError(e), { exitCode: VERIFY_ERROR_EXIT_CODE, cause: e });
  }
  try {
    const result = await verifyManifest(opened.image, manifest, { parallel: 4 });
    if (json) {
      out.stdout(
        JSON.stringify({
          ok: result.ok,
          chunks: result.chunks,
          "chunk-size": manifest.chunkSize,
          ...(result.firstMismatch !== undefined ? { offset: result.firstMismatch } : {}),
        }) + "\n",
      );
    } else if (result.ok) {
      if (!quiet) {
        out.stdout(
          `'${overlay}' matches '${manifestPath}': ${result.chunks} chunks of ${
            formatIoSize(manifest.chunkSize)
          } verified\n`,
        );
      }
    } else if (!quiet) {
      out.stdout(
        `Content mismatch at offset ${result.firstMismatch} (0x${
          result.firstMismatch!.toString(16)
        }): chunk of ${formatIoSize(manifest.chunkSize)} differs from '${manifestPath}'\n`,
      );
    }
    return result.ok ? 0 : 1;
  } catch (e) {
    throw new CliError(`Could not verify '${overlay}': ${describeError(e)}`, {
      exitCode: VERIFY_ERROR_EXIT_CODE,
      cause: e,
    });
  } finally {
    await opened.close();
  }
}
