/**
 * `qedstream manifest`: computes a template's checksum manifest (a SHA-256
 * per chunk, `block/manifest.ts`) once and stores it beside the template, so
 * that `stream --manifest` can verify every chunk it copies and `verify` can
 * check a finished overlay.
 *
 * ```
 * qedstream manifest [-f qed|raw] [-o FILE] [--chunk SIZE] TEMPLATE
 * ```
 *
 * The default output is `TEMPLATE.manifest`; the default chunk 64 KiB (a
 * power of two from 4 KiB to 64 MiB; a 4 GiB template then has a 2 MiB
 * manifest). Exit 0 written, 1 on an error.
 *
 * @module
 */

import { buildManifest, DEFAULT_MANIFEST_CHUNK, encodeManifest } from "../block/manifest.ts";
import { imageFormat, lastValue, parseArgs } from "./args.ts";
import { CliError, describeError } from "./error.ts";
import { openImage } from "./open.ts";
import type { CliOutput } from "./output.ts";
import { formatIoSize, parseSize } from "./size.ts";

/** The `manifest` verb. */
export async function manifestCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  const args = parseArgs(argv, { shortValues: "fo", longValues: ["chunk"] });
  const [template, extra] = args.operands;
  if (template === undefined) throw new CliError("Expecting one image file name");
  if (extra !== undefined) throw new CliError(`Unexpected argument: ${extra}`);
  const output = lastValue(args, "o") ?? `${template}.manifest`;
  const chunkText = lastValue(args, "chunk");
  let chunkSize = DEFAULT_MANIFEST_CHUNK;
  if (chunkText !== undefined) {
    const n = parseSize(chunkText);
    if (n === null || n > 1n << 30n) {
      throw new CliError(`Invalid --chunk value '${chunkText}': expected a size such as 64k`);
    }
    chunkSize = Number(n);
  }
  const opened = await openImage(template, { format: imageFormat(lastValue(args, "f")) });
  try {
    const manifest = await buildManifest(opened.image, { chunkSize, parallel: 4 });
    const bytes = encodeManifest(manifest);
    try {
      await Deno.writeFile(output, bytes);
    } catch (e) {
      throw new CliError(`Could not write '${output}': ${describeError(e)}`, { cause: e });
    }
    out.stdout(
      `Manifest of '${template}': ${manifest.hashes.length / 32} chunks of ${
        formatIoSize(chunkSize)
      } (${formatIoSize(manifest.templateSize)}), written to '${output}'\n`,
    );
    return 0;
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(describeError(e), { cause: e });
  } finally {
    await opened.close();
  }
}
